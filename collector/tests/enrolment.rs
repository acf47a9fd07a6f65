//! Enrolment over real TLS against an in-process collector: join tokens admit one node once,
//! service account tokens are checked against a locally generated cluster key set, renewals
//! keep the node's identity, the enrolment listener serves nothing else and the ingest listener
//! still wants a certificate, and revoked serials and identities are refused everywhere.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{write, TestCa, SHADOW_RULE};
use kestrel_collector::cli::identities::{revoke, token_create, RevokeArgs, TokenCreateArgs};
use kestrel_collector::cli::ServeArgs;
use kestrel_collector::ingress::AgentArgs;
use kestrel_collector::serve::{Collector, ServeError};
use kestrel_proto::enrol_request::Proof;
use kestrel_proto::enrolment_client::EnrolmentClient;
use kestrel_proto::ingest_client::IngestClient;
use kestrel_proto::{EnrolRequest, EnrolResponse, Renewal};
use kestrel_testkit::cluster::{ClusterKeys, TokenClaims, ISSUER};
use kestrel_testkit::grpc::{batch, connect, hello, open_stream, DEADLINE};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

struct Harness {
    dir: PathBuf,
    ca: TestCa,
    cluster: ClusterKeys,
    ingest: SocketAddr,
    enrol: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<Result<(), ServeError>>,
}

/// A certificate and key the collector issued.
struct Enrolled {
    response: EnrolResponse,
    key_pem: String,
}

impl Harness {
    async fn start(dir: &Path) -> Harness {
        Harness::start_with(dir, None).await
    }

    async fn start_with(dir: &Path, deny_list: Option<PathBuf>) -> Harness {
        let ca = TestCa::new("kestrel issuing CA");
        let server = ca.server();
        write(dir, "collector.pem", &server.cert_pem);
        write(dir, "collector-key.pem", &server.key_pem);
        write(dir, "ca.pem", &ca.cert_pem);
        write(dir, "ca-key.pem", &ca.key_pem);
        let cluster = ClusterKeys::new("cluster-key-1");
        cluster.write_jwks(&dir.join("jwks.json"));
        let config = write(
            dir,
            "collector.toml",
            &format!(
                "[enrolment]\nlisten = \"127.0.0.1:0\"\nca_cert = {:?}\nca_key = {:?}\n\
                 certificate_lifetime = \"1h\"\n\n[enrolment.kubernetes]\nissuer = {ISSUER:?}\n\
                 jwks = {:?}\n",
                dir.join("ca.pem"),
                dir.join("ca-key.pem"),
                dir.join("jwks.json"),
            ),
        );
        let rules = dir.join("rules");
        std::fs::create_dir_all(&rules).unwrap();
        write(&rules, "shadow.yml", SHADOW_RULE);
        let args = ServeArgs {
            check_config: false,
            listen: "127.0.0.1:0".into(),
            cert: dir.join("collector.pem"),
            key: dir.join("collector-key.pem"),
            client_ca: dir.join("ca.pem"),
            rules,
            data: dir.join("data"),
            alerts_jsonl: None,
            config: Some(config),
            metrics_listen: None,
            log_format: None,
            agents: AgentArgs {
                deny_list,
                trust_domain: Some("kestrel.local".into()),
                reload_interval: Duration::from_millis(100),
                ..AgentArgs::default()
            },
            store: Default::default(),
        };
        let collector = Collector::start(&args).await.unwrap();
        let ingest = collector.local_addr();
        let enrol = collector.enrolment_addr().expect("enrolment configured");
        let (stop, stopped) = oneshot::channel();
        let server = tokio::spawn(collector.run(async {
            let _ = stopped.await;
        }));
        Harness {
            dir: dir.to_owned(),
            ca,
            cluster,
            ingest,
            enrol,
            stop: Some(stop),
            server,
        }
    }

    fn token(&self, node: &str) -> String {
        token_create(&TokenCreateArgs {
            data: self.dir.join("data"),
            node: node.into(),
            ttl: Duration::from_secs(3600),
        })
        .unwrap()
    }

    fn revoke(&self, serial: Option<&str>, identity: Option<&str>) -> String {
        revoke(&RevokeArgs {
            data: self.dir.join("data"),
            serial: serial.map(Into::into),
            identity: identity.map(Into::into),
            reason: "test".into(),
        })
        .unwrap()
    }

    /// A channel to the enrolment listener, with a client certificate or without.
    async fn enrol_channel(&self, client: Option<&Enrolled>) -> Channel {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca.cert_pem))
            .domain_name("localhost");
        if let Some(client) = client {
            tls = tls.identity(Identity::from_pem(
                &client.response.certificate_pem,
                &client.key_pem,
            ));
        }
        Endpoint::from_shared(format!("https://{}", self.enrol))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect_timeout(DEADLINE)
            .connect()
            .await
            .unwrap()
    }

    /// Enrols as `node` with `proof` (a renewal presents `client`'s certificate).
    async fn enrol(
        &self,
        node: &str,
        proof: Proof,
        client: Option<&Enrolled>,
    ) -> Result<Enrolled, Status> {
        let key = rcgen::KeyPair::generate().unwrap();
        let csr = rcgen::CertificateParams::default()
            .serialize_request(&key)
            .unwrap();
        let request = EnrolRequest {
            csr_der: csr.der().to_vec(),
            node: node.into(),
            proof: Some(proof),
        };
        let channel = self.enrol_channel(client).await;
        let response = EnrolmentClient::new(channel).enrol(request).await?;
        Ok(Enrolled {
            response: response.into_inner(),
            key_pem: key.serialize_pem(),
        })
    }

    async fn ingest_client(&self, client: &Enrolled) -> Result<IngestClient<Channel>, Status> {
        connect(
            &format!("https://{}", self.ingest),
            &self.ca.cert_pem,
            &client.response.certificate_pem,
            &client.key_pem,
        )
        .await
    }

    async fn shutdown(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(DEADLINE, self.server)
            .await
            .expect("collector must stop within the deadline")
            .unwrap()
            .unwrap();
    }
}

/// The SANs of a PEM certificate.
fn sans(pem: &str) -> Vec<String> {
    let der: rustls_pki_types::CertificateDer<'static> =
        rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes()).unwrap();
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::URI(uri) => uri.to_string(),
            other => format!("{other:?}"),
        })
        .collect()
}

fn refused_with(result: Result<Enrolled, Status>, code: Code, says: &str) {
    match result {
        Ok(enrolled) => panic!(
            "enrolled as {} but must be refused",
            enrolled.response.identity
        ),
        Err(status) => {
            assert_eq!(status.code(), code, "{status:?}");
            assert!(status.message().contains(says), "{says:?} in {status:?}");
        }
    }
}

#[tokio::test]
async fn a_join_token_enrols_its_node_once_and_the_certificate_streams_events() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path()).await;
    let token = h.token("vm-1");
    let enrolled = h
        .enrol("vm-1", Proof::JoinToken(token.clone()), None)
        .await
        .unwrap();
    assert_eq!(
        enrolled.response.identity,
        "spiffe://kestrel.local/node/vm-1"
    );
    assert_eq!(
        sans(&enrolled.response.certificate_pem),
        ["spiffe://kestrel.local/node/vm-1"],
        "the only SAN names the node"
    );
    assert!(enrolled.response.not_after_unix - enrolled.response.not_before_unix <= 3600 + 300);

    let mut client = h.ingest_client(&enrolled).await.unwrap();
    let mut stream = open_stream(&mut client, hello(7)).await.unwrap();
    stream
        .send(batch(1, vec![common::harmless_exec_event()]))
        .await;
    assert_eq!(stream.ack().await, 1);

    refused_with(
        h.enrol("vm-1", Proof::JoinToken(token), None).await,
        Code::Unauthenticated,
        "already used",
    );
    refused_with(
        h.enrol("vm-2", Proof::JoinToken(h.token("vm-3")), None)
            .await,
        Code::PermissionDenied,
        "node mismatch",
    );
    refused_with(
        h.enrol("vm-2", Proof::JoinToken("kestrel-join-guess".into()), None)
            .await,
        Code::Unauthenticated,
        "unknown",
    );
    let mut registry = prometheus_client::registry::Registry::default();
    kestrel_collector::metrics::figures::figures().register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for outcome in ["issued", "bad_proof", "node_mismatch"] {
        let line = format!("kestrel_collector_enrolments_total{{outcome=\"{outcome}\"}}");
        let count = text
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .and_then(|v| v.trim().parse::<f64>().ok());
        assert!(count.is_some_and(|c| c >= 1.0), "{line} counted:\n{text}");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn service_account_tokens_are_checked_against_the_cluster_keys_with_the_reason_given() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path()).await;
    let sa = |token: String| Proof::ServiceAccountToken(token);
    let good = h
        .enrol(
            "node-a",
            sa(h.cluster.token(&TokenClaims::agent_on("node-a"))),
            None,
        )
        .await
        .unwrap();
    assert_eq!(good.response.identity, "spiffe://kestrel.local/node/node-a");

    let forger = ClusterKeys::new(&h.cluster.kid);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            h.cluster.token(&TokenClaims {
                expires_in_s: -120,
                ..TokenClaims::agent_on("node-a")
            }),
            "expired",
        ),
        (
            "wrong audience",
            h.cluster.token(&TokenClaims {
                audience: "vault".into(),
                ..TokenClaims::agent_on("node-a")
            }),
            "wrong audience",
        ),
        (
            "wrong node",
            h.cluster.token(&TokenClaims::agent_on("node-b")),
            "node mismatch",
        ),
        (
            "forged signature",
            forger.token(&TokenClaims::agent_on("node-a")),
            "signature does not verify",
        ),
        (
            "another service account",
            h.cluster.token(&TokenClaims {
                service_account: "default".into(),
                ..TokenClaims::agent_on("node-a")
            }),
            "not the agent's service account",
        ),
        (
            "no node claim",
            h.cluster.token(&TokenClaims {
                node: None,
                ..TokenClaims::agent_on("node-a")
            }),
            "kubernetes.io.node",
        ),
        (
            "another cluster's key",
            ClusterKeys::new("other-kid").token(&TokenClaims::agent_on("node-a")),
            "not among the cluster's signing keys",
        ),
    ];
    for (what, token, says) in cases {
        let result = h.enrol("node-a", sa(token), None).await;
        let status = result
            .err()
            .unwrap_or_else(|| panic!("{what}: must be refused"));
        assert!(
            status.message().contains(says),
            "{what}: {says:?} in {status:?}"
        );
    }
    h.shutdown().await;
}

#[tokio::test]
async fn a_renewal_keeps_the_node_and_the_enrolment_listener_serves_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path()).await;
    let first = h
        .enrol("vm-r", Proof::JoinToken(h.token("vm-r")), None)
        .await
        .unwrap();
    let renewed = h
        .enrol("vm-r", Proof::Renewal(Renewal {}), Some(&first))
        .await
        .unwrap();
    assert_eq!(renewed.response.identity, first.response.identity);
    assert_ne!(renewed.response.serial, first.response.serial);
    refused_with(
        h.enrol("vm-other", Proof::Renewal(Renewal {}), Some(&renewed))
            .await,
        Code::PermissionDenied,
        "node mismatch",
    );
    refused_with(
        h.enrol("vm-r", Proof::Renewal(Renewal {}), None).await,
        Code::Unauthenticated,
        "needs the current certificate",
    );

    // Without a certificate the enrolment listener lets the client in, but only to enrol.
    let mut ingest_on_enrol = IngestClient::new(h.enrol_channel(None).await);
    let status = open_stream(&mut ingest_on_enrol, hello(1))
        .await
        .err()
        .unwrap();
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    // The ingest listener still refuses a client without a certificate.
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&h.ca.cert_pem))
        .domain_name("localhost");
    let no_cert = Endpoint::from_shared(format!("https://{}", h.ingest))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await;
    let refused = match no_cert {
        Err(_) => true,
        Ok(channel) => open_stream(&mut IngestClient::new(channel), hello(1))
            .await
            .is_err(),
    };
    assert!(
        refused,
        "an ingest stream without a client certificate is refused"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_revoked_serial_and_a_revoked_identity_are_refused_and_their_live_stream_ends() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path()).await;
    let stolen = h
        .enrol("vm-s", Proof::JoinToken(h.token("vm-s")), None)
        .await
        .unwrap();
    let renewed_by_thief = h
        .enrol("vm-s", Proof::Renewal(Renewal {}), Some(&stolen))
        .await
        .unwrap();
    let mut client = h.ingest_client(&renewed_by_thief).await.unwrap();
    let mut live = open_stream(&mut client, hello(3)).await.unwrap();
    live.send(batch(1, vec![common::harmless_exec_event()]))
        .await;
    assert_eq!(live.ack().await, 1);

    let out = h.revoke(Some(&stolen.response.serial), None);
    assert!(out.contains(&renewed_by_thief.response.serial), "{out}");
    let status = live.ended().await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("revoked"), "{status:?}");
    for cert in [&stolen, &renewed_by_thief] {
        let stream = match h.ingest_client(cert).await {
            Ok(mut client) => open_stream(&mut client, hello(3)).await.err(),
            Err(status) => Some(status),
        };
        assert!(stream.is_some(), "a revoked certificate cannot stream");
    }
    refused_with(
        h.enrol("vm-s", Proof::Renewal(Renewal {}), Some(&renewed_by_thief))
            .await,
        Code::PermissionDenied,
        "revoked",
    );

    let gone = h
        .enrol("vm-g", Proof::JoinToken(h.token("vm-g")), None)
        .await
        .unwrap();
    h.revoke(None, Some("spiffe://kestrel.local/node/vm-g"));
    // The running collector reads the store's revocations every reload interval.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let refused = match h.ingest_client(&gone).await {
            Ok(mut client) => open_stream(&mut client, hello(3)).await.is_err(),
            Err(_) => true,
        };
        if refused {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a revoked identity cannot stream"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    refused_with(
        h.enrol("vm-g", Proof::JoinToken(h.token("vm-g")), None)
            .await,
        Code::PermissionDenied,
        "identity spiffe://kestrel.local/node/vm-g is revoked",
    );
    h.shutdown().await;
}

#[tokio::test]
async fn an_identity_on_the_deny_list_gets_no_certificate_and_keeps_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let deny = write(
        dir.path(),
        "deny-list",
        "spiffe://kestrel.local/node/vm-d\n",
    );
    let h = Harness::start_with(dir.path(), Some(deny)).await;
    let token = h.token("vm-d");
    refused_with(
        h.enrol("vm-d", Proof::JoinToken(token.clone()), None).await,
        Code::PermissionDenied,
        "identity spiffe://kestrel.local/node/vm-d is revoked",
    );
    std::fs::write(dir.path().join("deny-list"), "").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let enrolled = h.enrol("vm-d", Proof::JoinToken(token), None).await;
    assert!(
        enrolled.is_ok(),
        "the refused attempt did not consume the token: {:?}",
        enrolled.err()
    );
    h.shutdown().await;
}
