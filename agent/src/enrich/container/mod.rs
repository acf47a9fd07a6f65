//! Container context for events: which container (and Kubernetes pod) a process runs in.
//!
//! Every kernel record carries the cgroup v2 id of its task. [`ContainerResolver::resolve`]
//! turns `(cgroup_id, pid)` into a [`Container`] and an [`Enrichment`] status without waiting:
//!
//! 1. The first time a cgroup id is seen, its path comes from `/proc/<pid>/cgroup` (checked
//!    against the id), or, when the process is already gone, from a walk of the cgroup
//!    hierarchy in the background ([`cgroup::CgroupFs`]).
//! 2. The path names the container id and runtime ([`cgroup::parse_cgroup_path`]); a host
//!    cgroup is remembered as such.
//! 3. The runtime's API socket is asked about the container in the background
//!    ([`runtime::Endpoint::inspect`]): name, image and the `io.kubernetes.*` labels.
//!
//! Results are kept per cgroup id in a bounded cache ([`cache::CgroupCache`]) that forgets
//! cgroups not seen for a while (an ended container's cgroup id never comes back).
//!
//! With a Kubernetes pod directory ([`ContainerResolver::with_pods`], kept by the agent's watch
//! of its node's pods), a container whose pod uid is known (from its cgroup path or its
//! runtime's labels) also gets the pod's labels, owner workload, service account and node name
//! ([`pod_metadata::merge`]). The directory is read only when it has changed since the
//! container's context was last merged; a pod the watch has not seen yet leaves those fields
//! empty, and a later event carries them.

pub mod cache;
pub mod cgroup;
pub mod containerd;
pub mod details;
pub mod pod_metadata;
pub mod runtime;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

pub use kestrel_proto::{Container, Enrichment};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Semaphore};

use crate::enrich::kubernetes::PodDirectory;
use cache::CgroupCache;
use cgroup::{parse_cgroup_path, CgroupError, CgroupFs, ContainerRef, Runtime};
use details::{ContainerDetails, RuntimeError, LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_POD_UID};
use runtime::{ApiKind, Endpoint};

/// Settings of the container resolver (the `containers` section of the agent config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContainerConfig {
    /// Runtime API sockets to ask about containers. Those of the runtime that the cgroup path
    /// names are tried first, then the others in this order. Default: Podman
    /// `/run/podman/podman.sock`, Docker `/var/run/docker.sock`, CRI-O
    /// `/var/run/crio/crio.sock`, containerd `/run/containerd/containerd.sock`.
    pub endpoints: Vec<Endpoint>,
    /// containerd namespaces searched for a container id, in order. Default: `k8s.io`
    /// (Kubernetes), `moby` (Docker), `default` (`ctr`).
    pub containerd_namespaces: Vec<String>,
    /// Where the cgroup v2 hierarchy is mounted. Default: found in `/proc/self/mountinfo`
    /// (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on a hybrid host).
    pub cgroup_root: Option<PathBuf>,
    /// The host's `/proc` (set to e.g. `/host/proc` when the agent runs in a container).
    /// Default: `/proc`.
    pub proc_root: PathBuf,
    /// Most cgroups remembered; the least recently seen one makes room. Default: 8192.
    pub max_cgroups: usize,
    /// Seconds after which a cgroup not seen in any event is forgotten. Default: 600.
    pub idle_expiry_secs: u64,
    /// Milliseconds to wait for one runtime API answer. Default: 2000.
    pub lookup_timeout_ms: u64,
    /// Runtime API lookups running at once. Default: 8.
    pub max_concurrent_lookups: usize,
    /// Milliseconds before the first retry of a failed lookup; each further failure doubles
    /// it, up to `retry_max_secs`. Default: 1000.
    pub retry_min_ms: u64,
    /// Longest wait between retries of a failed lookup, in seconds. Default: 60.
    pub retry_max_secs: u64,
}

impl Default for ContainerConfig {
    fn default() -> Self {
        Self {
            endpoints: Endpoint::defaults(),
            containerd_namespaces: ["k8s.io", "moby", "default"].map(String::from).into(),
            cgroup_root: None,
            proc_root: PathBuf::from("/proc"),
            max_cgroups: 8192,
            idle_expiry_secs: 600,
            lookup_timeout_ms: 2000,
            max_concurrent_lookups: 8,
            retry_min_ms: 1000,
            retry_max_secs: 60,
        }
    }
}

/// Most cgroups [`ContainerConfig::max_cgroups`] may ask to remember.
pub const MOST_CGROUPS: u64 = 1 << 20;
/// Most runtime lookups [`ContainerConfig::max_concurrent_lookups`] may run at once.
pub const MOST_CONCURRENT_LOOKUPS: u64 = 256;
/// Longest [`ContainerConfig::lookup_timeout_ms`]: a runtime slower than this is as good as
/// absent, and events wait for nothing.
pub const MOST_LOOKUP_TIMEOUT_MS: u64 = 60_000;

impl ContainerConfig {
    /// Every problem with these settings (empty when they are usable).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let positive = [
            ("max_cgroups", self.max_cgroups as u64),
            ("idle_expiry_secs", self.idle_expiry_secs),
            ("lookup_timeout_ms", self.lookup_timeout_ms),
            ("max_concurrent_lookups", self.max_concurrent_lookups as u64),
            ("retry_min_ms", self.retry_min_ms),
            ("retry_max_secs", self.retry_max_secs),
        ];
        for (field, value) in positive {
            if value == 0 {
                problems.push(format!("containers.{field} must be greater than 0"));
            }
        }
        for endpoint in &self.endpoints {
            if !endpoint.socket.is_absolute() {
                problems.push(format!(
                    "containers.endpoints: socket {} must be an absolute path",
                    endpoint.socket.display()
                ));
            }
        }
        if self.containerd_namespaces.iter().any(String::is_empty) {
            problems.push("containers.containerd_namespaces: empty namespace name".into());
        }
        for (field, path) in [
            ("proc_root", Some(&self.proc_root)),
            ("cgroup_root", self.cgroup_root.as_ref()),
        ] {
            if let Some(path) = path.filter(|p| !p.is_absolute()) {
                problems.push(format!(
                    "containers.{field}: {} must be an absolute path",
                    path.display()
                ));
            }
        }
        // Upper bounds keep a typo from becoming a memory or file-descriptor exhaustion.
        for (field, value, most) in [
            ("max_cgroups", self.max_cgroups as u64, MOST_CGROUPS),
            (
                "max_concurrent_lookups",
                self.max_concurrent_lookups as u64,
                MOST_CONCURRENT_LOOKUPS,
            ),
            (
                "lookup_timeout_ms",
                self.lookup_timeout_ms,
                MOST_LOOKUP_TIMEOUT_MS,
            ),
        ] {
            if value > most {
                problems.push(format!(
                    "containers.{field} must be at most {most}, got {value}"
                ));
            }
        }
        if self.retry_min_ms > self.retry_max_secs.saturating_mul(1000) {
            problems.push(format!(
                "containers.retry_min_ms ({} ms) must not exceed retry_max_secs ({} s)",
                self.retry_min_ms, self.retry_max_secs
            ));
        }
        problems
    }
}

/// Why a [`ContainerResolver`] cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ResolverError {
    /// The settings are unusable; every problem is listed.
    #[error("invalid container settings: {}", .0.join("; "))]
    Config(Vec<String>),
    /// The cgroup v2 hierarchy could not be found.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// Built outside a tokio runtime: lookups need one to run on.
    #[error("the container resolver must be created inside a tokio runtime")]
    NoTokioRuntime,
}

/// What is known about one cgroup.
#[derive(Debug)]
enum Entry {
    /// A host cgroup, not a container.
    Host,
    /// The path is being looked up by a walk of the hierarchy requested at `since`.
    Locating { since: Instant },
    /// The cgroup no longer exists and its process was gone before its path could be read:
    /// whether it was a container cannot be known.
    Vanished,
    /// A container whose details the runtime has not given yet.
    Pending(Box<PendingLookup>),
    /// A container with its details.
    Complete(Box<Described>),
}

/// A described container and the pod directory generation merged into it.
#[derive(Debug)]
struct Described {
    container: Container,
    pods_merged: u64,
}

/// The `pods_merged` of a context no pod directory has been merged into.
const NEVER_MERGED: u64 = u64::MAX;

/// A container waiting for its runtime's answer.
#[derive(Debug)]
struct PendingLookup {
    reference: ContainerRef,
    /// What the cgroup path alone tells (id, runtime, pod uid).
    partial: Container,
    in_flight: bool,
    failures: u32,
    retry_at: Instant,
    /// The pod directory generation merged into `partial`.
    pods_merged: u64,
}

/// A background task's result, applied by the next [`ContainerResolver::resolve`].
enum Outcome {
    /// A walk of the cgroup hierarchy started at `started`: every cgroup by id.
    Walked {
        started: Instant,
        index: HashMap<u64, String>,
    },
    /// A runtime lookup for the container in `cgroup_id` finished.
    Described {
        cgroup_id: u64,
        result: Result<(ApiKind, ContainerDetails), Vec<RuntimeError>>,
    },
}

/// Settings the lookup tasks share.
#[derive(Debug)]
struct Lookup {
    endpoints: Vec<Endpoint>,
    namespaces: Vec<String>,
    timeout: Duration,
    limiter: Semaphore,
}

/// Turns the cgroup id and pid of an event into its container context, never waiting: see
/// the [module documentation](self).
///
/// Create it inside a tokio runtime (lookups run on it) and call [`resolve`](Self::resolve)
/// for every event from the single task that owns it.
pub struct ContainerResolver {
    cgroups: Arc<CgroupFs>,
    lookup: Arc<Lookup>,
    cache: CgroupCache<Entry>,
    tokio: tokio::runtime::Handle,
    outcomes_tx: mpsc::UnboundedSender<Outcome>,
    outcomes_rx: mpsc::UnboundedReceiver<Outcome>,
    walk_in_flight: bool,
    retry_min: Duration,
    retry_max: Duration,
    sweep_every: Duration,
    last_sweep: Instant,
    pods: Option<Arc<PodDirectory>>,
}

impl ContainerResolver {
    /// A resolver with `config`. Fails on invalid settings, when no cgroup v2 hierarchy is
    /// mounted (a pure cgroup v1 host: every task then shares one cgroup id and containers
    /// cannot be told apart), or outside a tokio runtime.
    pub fn new(config: ContainerConfig) -> Result<Self, ResolverError> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(ResolverError::Config(problems));
        }
        let cgroups = match &config.cgroup_root {
            Some(root) => CgroupFs::at(root),
            None => CgroupFs::discover()?,
        }
        .with_proc(&config.proc_root);
        let tokio =
            tokio::runtime::Handle::try_current().map_err(|_| ResolverError::NoTokioRuntime)?;
        let (outcomes_tx, outcomes_rx) = mpsc::unbounded_channel();
        let idle_expiry = Duration::from_secs(config.idle_expiry_secs);
        Ok(Self {
            cgroups: Arc::new(cgroups),
            lookup: Arc::new(Lookup {
                endpoints: config.endpoints,
                namespaces: config.containerd_namespaces,
                timeout: Duration::from_millis(config.lookup_timeout_ms),
                limiter: Semaphore::new(config.max_concurrent_lookups),
            }),
            cache: CgroupCache::new(config.max_cgroups, idle_expiry),
            tokio,
            outcomes_tx,
            outcomes_rx,
            walk_in_flight: false,
            retry_min: Duration::from_millis(config.retry_min_ms),
            retry_max: Duration::from_secs(config.retry_max_secs),
            sweep_every: (idle_expiry / 4).max(Duration::from_secs(1)),
            last_sweep: Instant::now(),
            pods: None,
        })
    }

    /// Also merges Kubernetes metadata from `pods` (by pod uid) into every container's context.
    pub fn with_pods(mut self, pods: Arc<PodDirectory>) -> Self {
        self.pods = Some(pods);
        self
    }

    /// The container context of an event from process `pid` in cgroup `cgroup_id`, as known
    /// now; never waits.
    ///
    /// - `(None, Enrichment::None)`: a host process, not in a container.
    /// - `(Some(c), Enrichment::Pending)`: in container `c.id` (with `c.runtime` and, for
    ///   Kubernetes, `c.pod_uid` when the cgroup path tells them); the runtime's answer is on
    ///   its way, or the runtime could not be asked (retried with backoff).
    /// - `(None, Enrichment::Pending)`: not known yet whether the cgroup is a container's
    ///   (its process exited before its cgroup was read, and a walk of the hierarchy is
    ///   running), or never knowable (the cgroup was gone before the walk found it).
    /// - `(Some(c), Enrichment::Complete)`: name, image and pod labels filled in.
    ///
    /// The first call for a cgroup id reads `/proc/<pid>/cgroup` and stats one directory;
    /// every other call is a map lookup.
    pub fn resolve(&mut self, cgroup_id: u64, pid: u32) -> (Option<Container>, Enrichment) {
        let now = Instant::now();
        self.apply_outcomes(now);
        if now.saturating_duration_since(self.last_sweep) >= self.sweep_every {
            self.cache.expire(now);
            self.last_sweep = now;
        }
        if self.cache.get_mut(cgroup_id, now).is_none() {
            let entry = match self.cgroups.path_of_pid_in(pid, cgroup_id) {
                Some(path) => self.classify(cgroup_id, &path, now),
                None => {
                    self.start_walk(now);
                    Entry::Locating { since: now }
                }
            };
            self.cache.insert(cgroup_id, entry, now);
        }
        let retry = match self.cache.peek_mut(cgroup_id) {
            Some(Entry::Pending(p)) if !p.in_flight && now >= p.retry_at => {
                p.in_flight = true;
                Some(p.reference.clone())
            }
            _ => None,
        };
        if let Some(reference) = retry {
            self.start_lookup(cgroup_id, reference);
        }
        if let Some(pods) = &self.pods {
            let generation = pods.generation();
            let context = match self.cache.peek_mut(cgroup_id) {
                Some(Entry::Pending(p)) => Some((&mut p.partial, &mut p.pods_merged)),
                Some(Entry::Complete(d)) => Some((&mut d.container, &mut d.pods_merged)),
                _ => None,
            };
            if let Some((container, merged)) = context {
                if *merged != generation && !container.pod_uid.is_empty() {
                    if let Some(pod) = pods.get(&container.pod_uid) {
                        pod_metadata::merge(container, &pod);
                    }
                    *merged = generation;
                }
            }
        }
        self.answer(cgroup_id)
    }

    /// What the cache holds for `cgroup_id`, as [`resolve`](Self::resolve) answers it.
    fn answer(&mut self, cgroup_id: u64) -> (Option<Container>, Enrichment) {
        match self.cache.peek_mut(cgroup_id) {
            Some(Entry::Host) | None => (None, Enrichment::None),
            Some(Entry::Locating { .. } | Entry::Vanished) => (None, Enrichment::Pending),
            Some(Entry::Pending(p)) => (Some(p.partial.clone()), Enrichment::Pending),
            Some(Entry::Complete(d)) => (Some(d.container.clone()), Enrichment::Complete),
        }
    }

    /// Number of cgroups remembered.
    pub fn cached_cgroups(&self) -> usize {
        self.cache.len()
    }

    /// Number of containers whose runtime lookup has not succeeded yet.
    pub fn pending_containers(&self) -> usize {
        self.cache
            .iter()
            .filter(|(_, e)| matches!(e, Entry::Pending(_)))
            .count()
    }

    /// The entry for a cgroup whose path is `path`; starts the runtime lookup for a container.
    fn classify(&mut self, cgroup_id: u64, path: &str, now: Instant) -> Entry {
        let Some(reference) = parse_cgroup_path(path) else {
            return Entry::Host;
        };
        tracing::debug!(cgroup_id, path, id = %reference.id, "container cgroup");
        let partial = Container {
            id: reference.id.clone(),
            runtime: reference.runtime.as_str().to_owned(),
            pod_uid: reference.pod_uid.clone().unwrap_or_default(),
            ..Container::default()
        };
        self.start_lookup(cgroup_id, reference.clone());
        Entry::Pending(Box::new(PendingLookup {
            reference,
            partial,
            in_flight: true,
            failures: 0,
            retry_at: now,
            pods_merged: NEVER_MERGED,
        }))
    }

    /// Applies every finished background result.
    fn apply_outcomes(&mut self, now: Instant) {
        while let Ok(outcome) = self.outcomes_rx.try_recv() {
            match outcome {
                Outcome::Walked { started, index } => self.apply_walk(started, &index, now),
                Outcome::Described { cgroup_id, result } => {
                    self.apply_lookup(cgroup_id, result, now)
                }
            }
        }
    }

    fn apply_walk(&mut self, started: Instant, index: &HashMap<u64, String>, now: Instant) {
        self.walk_in_flight = false;
        let locating: Vec<(u64, Instant)> = self
            .cache
            .iter()
            .filter_map(|(id, entry)| match entry {
                Entry::Locating { since } => Some((id, *since)),
                _ => None,
            })
            .collect();
        let mut walk_again = false;
        for (cgroup_id, since) in locating {
            let entry = match index.get(&cgroup_id) {
                Some(path) => self.classify(cgroup_id, path, now),
                // Asked for after this walk began: a new walk may still find it.
                None if since > started => {
                    walk_again = true;
                    continue;
                }
                None => Entry::Vanished,
            };
            if let Some(slot) = self.cache.peek_mut(cgroup_id) {
                *slot = entry;
            }
        }
        if walk_again {
            self.start_walk(now);
        }
    }

    fn apply_lookup(
        &mut self,
        cgroup_id: u64,
        result: Result<(ApiKind, ContainerDetails), Vec<RuntimeError>>,
        now: Instant,
    ) {
        let (retry_min, retry_max) = (self.retry_min, self.retry_max);
        let Some(slot) = self.cache.peek_mut(cgroup_id) else {
            return; // forgotten meanwhile
        };
        let Entry::Pending(pending) = slot else {
            return;
        };
        match result {
            Ok((kind, details)) => {
                let container = complete(&pending.reference, kind, &details);
                tracing::debug!(
                    cgroup_id,
                    id = %container.id,
                    image = %container.image,
                    pod = %container.pod_name,
                    "container described"
                );
                *slot = Entry::Complete(Box::new(Described {
                    container,
                    pods_merged: NEVER_MERGED,
                }));
            }
            Err(errors) => {
                pending.in_flight = false;
                pending.failures += 1;
                let backoff = retry_min
                    .saturating_mul(1 << (pending.failures - 1).min(16))
                    .min(retry_max);
                pending.retry_at = now + backoff;
                let reasons: Vec<String> = errors.iter().map(ToString::to_string).collect();
                if pending.failures == 1 {
                    tracing::warn!(
                        cgroup_id,
                        id = %pending.reference.id,
                        errors = %reasons.join("; "),
                        "no runtime describes this container; retrying in {backoff:?}"
                    );
                } else {
                    tracing::debug!(
                        cgroup_id,
                        id = %pending.reference.id,
                        failures = pending.failures,
                        errors = %reasons.join("; "),
                        "container lookup failed again"
                    );
                }
            }
        }
    }

    /// Starts one background walk of the cgroup hierarchy, unless one is running.
    fn start_walk(&mut self, now: Instant) {
        if self.walk_in_flight {
            return;
        }
        self.walk_in_flight = true;
        let cgroups = Arc::clone(&self.cgroups);
        let tx = self.outcomes_tx.clone();
        self.tokio.spawn_blocking(move || {
            let index = cgroups.index();
            let _ = tx.send(Outcome::Walked {
                started: now,
                index,
            });
        });
    }

    /// Starts a background lookup of `reference` in the runtime APIs.
    fn start_lookup(&self, cgroup_id: u64, reference: ContainerRef) {
        let lookup = Arc::clone(&self.lookup);
        let tx = self.outcomes_tx.clone();
        self.tokio.spawn(async move {
            let result = lookup.describe(&reference).await;
            let _ = tx.send(Outcome::Described { cgroup_id, result });
        });
    }
}

impl Lookup {
    /// Asks the runtime APIs about `reference`, those of its runtime first; the first answer
    /// wins. On failure, every endpoint's error.
    async fn describe(
        &self,
        reference: &ContainerRef,
    ) -> Result<(ApiKind, ContainerDetails), Vec<RuntimeError>> {
        let _permit = self.limiter.acquire().await;
        let mut endpoints: Vec<&Endpoint> = self.endpoints.iter().collect();
        endpoints.sort_by_key(|e| !serves(e.kind, reference.runtime));
        let mut errors = Vec::new();
        for endpoint in endpoints {
            let asked = endpoint.inspect(&reference.id, &self.namespaces);
            match tokio::time::timeout(self.timeout, asked).await {
                Ok(Ok(details)) => return Ok((endpoint.kind, details)),
                Ok(Err(error)) => errors.push(error),
                Err(_) => errors.push(RuntimeError::Timeout {
                    socket: endpoint.socket.clone(),
                    after: self.timeout,
                }),
            }
        }
        Err(errors)
    }
}

/// True when an API of `kind` is the natural one to ask about a container of `runtime`
/// (Podman's service and Docker's speak the same API, and `podman-docker` serves Podman at
/// Docker's socket).
fn serves(kind: ApiKind, runtime: Runtime) -> bool {
    matches!(
        (kind, runtime),
        (
            ApiKind::Docker | ApiKind::Podman,
            Runtime::Docker | Runtime::Podman
        ) | (ApiKind::CriO, Runtime::CriO)
            | (ApiKind::Containerd, Runtime::Containerd)
    )
}

/// The container context from the cgroup path's `reference` and the runtime's `details`.
fn complete(reference: &ContainerRef, kind: ApiKind, details: &ContainerDetails) -> Container {
    let runtime = match reference.runtime {
        Runtime::Unknown => kind.runtime_name(),
        known => known.as_str(),
    };
    let pod_uid = match details.label(LABEL_POD_UID) {
        "" => reference.pod_uid.clone().unwrap_or_default(),
        uid => uid.to_owned(),
    };
    Container {
        id: reference.id.clone(),
        runtime: runtime.to_owned(),
        name: details.display_name().to_owned(),
        image: details.image.clone(),
        pod_name: details.label(LABEL_POD_NAME).to_owned(),
        pod_namespace: details.label(LABEL_POD_NAMESPACE).to_owned(),
        pod_uid,
        ..Container::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{fs, os::unix::fs::MetadataExt as _, path::Path};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    const ID: &str = "cd78013b81ff3e3e3396d97ac91c7f0c363ef9388a32eafb1f7873654248f0ec";

    /// A fake host: a cgroup tree and a `/proc` with `<pid>/cgroup` files, under a temp dir.
    struct FakeHost {
        dir: tempfile::TempDir,
    }

    impl FakeHost {
        fn new() -> Self {
            let host = Self {
                dir: tempfile::tempdir().unwrap(),
            };
            fs::create_dir_all(host.cgroup_root()).unwrap();
            fs::create_dir_all(host.proc_root()).unwrap();
            host
        }
        fn cgroup_root(&self) -> std::path::PathBuf {
            self.dir.path().join("cgroup")
        }
        fn proc_root(&self) -> std::path::PathBuf {
            self.dir.path().join("proc")
        }
        fn socket(&self, name: &str) -> std::path::PathBuf {
            self.dir.path().join(name)
        }
        /// Creates cgroup `path`; returns its id.
        fn cgroup(&self, path: &str) -> u64 {
            let dir = self.cgroup_root().join(path.trim_start_matches('/'));
            fs::create_dir_all(&dir).unwrap();
            fs::metadata(dir).unwrap().ino()
        }
        /// Puts process `pid` in cgroup `path`.
        fn process(&self, pid: u32, path: &str) {
            let dir = self.proc_root().join(pid.to_string());
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("cgroup"), format!("1:memory:/x\n0::{path}\n")).unwrap();
        }
        fn config(&self, endpoints: Vec<Endpoint>) -> ContainerConfig {
            ContainerConfig {
                endpoints,
                cgroup_root: Some(self.cgroup_root()),
                proc_root: self.proc_root(),
                lookup_timeout_ms: 500,
                retry_min_ms: 50,
                retry_max_secs: 1,
                ..ContainerConfig::default()
            }
        }
    }

    /// Answers every HTTP request on `socket` with `body`.
    fn serve_json(socket: &Path, body: serde_json::Value) {
        let listener = tokio::net::UnixListener::bind(socket).unwrap();
        let body = body.to_string();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let body = body.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
    }

    fn podman_answer() -> serde_json::Value {
        serde_json::json!({
            "Name": "kt1",
            "Config": {
                "Image": "localhost/kestrel-busybox:test",
                "Labels": {
                    "io.kubernetes.pod.name": "web-0",
                    "io.kubernetes.pod.namespace": "prod",
                    "io.kubernetes.pod.uid": "3c1a4e7f-0c1d-4a5b-9f7e-2b1c3d4e5f60"
                }
            }
        })
    }

    /// Calls `resolve` until `done` accepts the answer or 5 s pass; returns the last answer.
    async fn resolve_until(
        resolver: &mut ContainerResolver,
        cgroup_id: u64,
        pid: u32,
        done: impl Fn(&(Option<Container>, Enrichment)) -> bool,
    ) -> (Option<Container>, Enrichment) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let answer = resolver.resolve(cgroup_id, pid);
            if done(&answer) || Instant::now() > deadline {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_host_process_has_no_container() {
        let host = FakeHost::new();
        let id = host.cgroup("/system.slice/sshd.service");
        host.process(100, "/system.slice/sshd.service");
        let mut resolver = ContainerResolver::new(host.config(vec![])).unwrap();
        assert_eq!(resolver.resolve(id, 100), (None, Enrichment::None));
        assert_eq!(resolver.resolve(id, 100), (None, Enrichment::None));
        assert_eq!(resolver.cached_cgroups(), 1);
    }

    #[tokio::test]
    async fn a_container_is_pending_at_once_and_complete_when_the_runtime_answers() {
        let host = FakeHost::new();
        let path = format!("/libpod_parent/libpod-{ID}");
        let id = host.cgroup(&path);
        host.process(200, &path);
        let socket = host.socket("podman.sock");
        serve_json(&socket, podman_answer());
        let mut resolver =
            ContainerResolver::new(host.config(vec![Endpoint::new(ApiKind::Podman, &socket)]))
                .unwrap();

        let (container, enrichment) = resolver.resolve(id, 200);
        assert_eq!(enrichment, Enrichment::Pending);
        let container = container.expect("the cgroup path names the container");
        assert_eq!(
            (container.id.as_str(), container.runtime.as_str()),
            (ID, "podman")
        );

        let (container, enrichment) =
            resolve_until(&mut resolver, id, 200, |a| a.1 == Enrichment::Complete).await;
        assert_eq!(enrichment, Enrichment::Complete);
        assert_eq!(
            container,
            Some(Container {
                id: ID.into(),
                runtime: "podman".into(),
                name: "kt1".into(),
                image: "localhost/kestrel-busybox:test".into(),
                pod_name: "web-0".into(),
                pod_namespace: "prod".into(),
                pod_uid: "3c1a4e7f-0c1d-4a5b-9f7e-2b1c3d4e5f60".into(),
                ..Container::default()
            })
        );
        assert_eq!(resolver.pending_containers(), 0);
    }

    #[tokio::test]
    async fn a_process_gone_before_its_cgroup_was_read_is_found_by_walking_the_hierarchy() {
        let host = FakeHost::new();
        let id = host.cgroup(&format!("/machine.slice/libpod-{ID}.scope"));
        let socket = host.socket("podman.sock");
        serve_json(&socket, podman_answer());
        let mut resolver =
            ContainerResolver::new(host.config(vec![Endpoint::new(ApiKind::Podman, &socket)]))
                .unwrap();

        assert_eq!(resolver.resolve(id, 999_999), (None, Enrichment::Pending));
        let (container, enrichment) =
            resolve_until(&mut resolver, id, 999_999, |a| a.1 == Enrichment::Complete).await;
        assert_eq!(enrichment, Enrichment::Complete);
        assert_eq!(
            container.expect("container").image,
            "localhost/kestrel-busybox:test"
        );
    }

    #[tokio::test]
    async fn a_cgroup_that_vanished_before_it_was_read_stays_unknown_not_host() {
        let host = FakeHost::new();
        host.cgroup("/system.slice");
        let mut resolver = ContainerResolver::new(host.config(vec![])).unwrap();
        let gone = u64::MAX - 1;
        assert_eq!(resolver.resolve(gone, 999_999), (None, Enrichment::Pending));
        // Wait for the walk to finish and be applied.
        let start = Instant::now();
        while resolver.walk_in_flight && start.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(10)).await;
            resolver.resolve(gone, 999_999);
        }
        assert!(!resolver.walk_in_flight, "the walk finished");
        assert_eq!(resolver.resolve(gone, 999_999), (None, Enrichment::Pending));
    }

    #[tokio::test]
    async fn an_unreachable_runtime_keeps_the_container_pending_and_is_retried() {
        let host = FakeHost::new();
        let path = format!("/system.slice/docker-{ID}.scope");
        let id = host.cgroup(&path);
        host.process(300, &path);
        let socket = host.socket("docker.sock");
        let mut resolver =
            ContainerResolver::new(host.config(vec![Endpoint::new(ApiKind::Docker, &socket)]))
                .unwrap();

        let (container, enrichment) = resolver.resolve(id, 300);
        assert_eq!(enrichment, Enrichment::Pending);
        assert_eq!(container.expect("container").runtime, "docker");
        // The first lookup fails (nothing listens); the entry stays pending.
        let start = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            resolver.resolve(id, 300);
            let failed = matches!(
                resolver.cache.peek_mut(id),
                Some(Entry::Pending(p)) if p.failures > 0
            );
            if failed || start.elapsed() > Duration::from_secs(5) {
                break;
            }
        }
        assert_eq!(resolver.pending_containers(), 1);
        assert_eq!(resolver.resolve(id, 300).1, Enrichment::Pending);

        // The runtime comes up: a retry completes the container.
        serve_json(&socket, podman_answer());
        let (container, enrichment) =
            resolve_until(&mut resolver, id, 300, |a| a.1 == Enrichment::Complete).await;
        assert_eq!(enrichment, Enrichment::Complete);
        let container = container.expect("container");
        assert_eq!(
            (container.runtime.as_str(), container.name.as_str()),
            ("docker", "kt1")
        );
    }

    #[tokio::test]
    async fn kubernetes_pod_uid_from_the_cgroup_path_is_kept_when_labels_lack_it() {
        let host = FakeHost::new();
        let uid = "3c1a4e7f-0c1d-4a5b-9f7e-2b1c3d4e5f60";
        let path = format!("/kubepods/burstable/pod{uid}/{ID}");
        let id = host.cgroup(&path);
        host.process(400, &path);
        let socket = host.socket("crio.sock");
        serve_json(
            &socket,
            serde_json::json!({
                "name": "k8s_app", "image": "quay.io/org/web:1",
                "labels": {"io.kubernetes.container.name": "app", "io.kubernetes.pod.name": "web-0"}
            }),
        );
        let mut resolver =
            ContainerResolver::new(host.config(vec![Endpoint::new(ApiKind::CriO, &socket)]))
                .unwrap();
        let (pending, _) = resolver.resolve(id, 400);
        assert_eq!(pending.expect("container").pod_uid, uid);
        let (container, enrichment) =
            resolve_until(&mut resolver, id, 400, |a| a.1 == Enrichment::Complete).await;
        assert_eq!(enrichment, Enrichment::Complete);
        let container = container.expect("container");
        assert_eq!(
            container.runtime, "cri-o",
            "the API that answered names the runtime"
        );
        assert_eq!(container.name, "app");
        assert_eq!(container.pod_name, "web-0");
        assert_eq!(container.pod_uid, uid);
    }

    /// A Kubernetes container's cgroup (systemd driver, containerd) in pod `uid`.
    fn kubepods_path(uid: &str) -> String {
        format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{ID}.scope",
            uid.replace('-', "_")
        )
    }

    #[tokio::test]
    async fn pod_metadata_reaches_the_container_by_its_pod_uid_once_the_watch_has_it() {
        use crate::enrich::kubernetes::pod::{LabelBounds, PodMeta};
        let host = FakeHost::new();
        let uid = "3c1a4e7f-0c1d-4a5b-9f7e-2b1c3d4e5f60";
        let path = kubepods_path(uid);
        let id = host.cgroup(&path);
        host.process(500, &path);
        let socket = host.socket("crio.sock");
        serve_json(
            &socket,
            serde_json::json!({
                "name": "k8s_web", "image": "registry.example/shop/web:1.4.2",
                "labels": {"io.kubernetes.container.name": "web",
                           "io.kubernetes.pod.name": "web-7d4b9c8f5-x2x9q",
                           "io.kubernetes.pod.namespace": "shop"}
            }),
        );
        let pods = Arc::new(PodDirectory::new(16));
        let mut resolver =
            ContainerResolver::new(host.config(vec![Endpoint::new(ApiKind::CriO, &socket)]))
                .unwrap()
                .with_pods(Arc::clone(&pods));

        // The watch has seen nothing yet: the event goes on with what the runtime tells.
        let (container, enrichment) =
            resolve_until(&mut resolver, id, 500, |a| a.1 == Enrichment::Complete).await;
        assert_eq!(enrichment, Enrichment::Complete);
        let container = container.expect("container");
        assert_eq!(container.pod_uid, uid, "from the cgroup path");
        assert!(container.pod_labels.is_empty() && container.workload_kind.is_empty());

        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "web-7d4b9c8f5-x2x9q", "namespace": "shop", "uid": uid,
                "labels": {"app.kubernetes.io/part-of": "shop", "pod-template-hash": "7d4b9c8f5"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "web-7d4b9c8f5", "uid": "r1", "controller": true}]
            },
            "spec": {"serviceAccountName": "web", "nodeName": "node-1", "containers": []}
        }))
        .unwrap();
        let bounds = LabelBounds {
            max_labels: 64,
            max_label_bytes: 384,
        };
        pods.upsert(PodMeta::from_pod(&pod, bounds).unwrap());

        let (container, enrichment) = resolver.resolve(id, 500);
        assert_eq!(enrichment, Enrichment::Complete);
        let container = container.expect("container");
        assert_eq!(
            (
                container.workload_kind.as_str(),
                container.workload_name.as_str()
            ),
            ("Deployment", "web")
        );
        assert_eq!(
            container
                .pod_labels
                .get("app.kubernetes.io/part-of")
                .map(String::as_str),
            Some("shop")
        );
        assert_eq!(
            (
                container.service_account.as_str(),
                container.node_name.as_str()
            ),
            ("web", "node-1")
        );
        assert_eq!(
            (container.name.as_str(), container.image.as_str()),
            ("web", "registry.example/shop/web:1.4.2"),
            "the runtime's view stays"
        );
    }

    #[tokio::test]
    async fn a_pending_container_gets_pod_metadata_and_keeps_it_after_the_pod_is_deleted() {
        use crate::enrich::kubernetes::{owner::Workload, pod::PodMeta};
        let host = FakeHost::new();
        // A static pod: its cgroup names the kubelet's config hash, not the mirror's uid.
        let hash = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
        let path = format!("/kubepods/burstable/pod{hash}/{ID}");
        let id = host.cgroup(&path);
        host.process(600, &path);
        let pods = Arc::new(PodDirectory::new(16));
        // No runtime answers: the container stays pending.
        let mut resolver = ContainerResolver::new(host.config(vec![]))
            .unwrap()
            .with_pods(Arc::clone(&pods));
        let (container, enrichment) = resolver.resolve(id, 600);
        assert_eq!(enrichment, Enrichment::Pending);
        assert_eq!(container.expect("container").pod_name, "");

        pods.upsert(PodMeta {
            uid: "d1c2b3a4-9f8e-4d7c-b6a5-0f1e2d3c4b5a".into(),
            name: "etcd-node-1".into(),
            namespace: "kube-system".into(),
            labels: [("component".to_owned(), "etcd".to_owned())].into(),
            workload: Some(Workload {
                kind: "Node".into(),
                name: "node-1".into(),
            }),
            node_name: "node-1".into(),
            mirror_of: Some(hash.into()),
            ..PodMeta::default()
        });
        let (container, enrichment) = resolver.resolve(id, 600);
        assert_eq!(enrichment, Enrichment::Pending);
        let container = container.expect("container");
        assert_eq!(
            (
                container.pod_name.as_str(),
                container.pod_namespace.as_str()
            ),
            ("etcd-node-1", "kube-system"),
            "the API fills in what the runtime could not tell"
        );
        assert_eq!(container.workload_kind, "Node");

        pods.remove("d1c2b3a4-9f8e-4d7c-b6a5-0f1e2d3c4b5a");
        let (container, _) = resolver.resolve(id, 600);
        assert_eq!(
            container
                .expect("container")
                .pod_labels
                .get("component")
                .map(String::as_str),
            Some("etcd"),
            "a deleted pod's last metadata stays with its remaining processes"
        );
    }

    #[tokio::test]
    async fn invalid_settings_are_rejected_listing_every_problem() {
        let config = ContainerConfig {
            max_cgroups: 0,
            lookup_timeout_ms: 0,
            endpoints: vec![Endpoint::new(ApiKind::Docker, "relative.sock")],
            ..ContainerConfig::default()
        };
        let err = ContainerResolver::new(config)
            .err()
            .expect("rejected")
            .to_string();
        for expected in ["max_cgroups", "lookup_timeout_ms", "relative.sock"] {
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn settings_out_of_bounds_are_each_named() {
        let config = ContainerConfig {
            proc_root: "host/proc".into(),
            max_cgroups: MOST_CGROUPS as usize + 1,
            max_concurrent_lookups: 100_000,
            lookup_timeout_ms: 10 * 60 * 1000,
            retry_min_ms: 120_000,
            retry_max_secs: 60,
            ..ContainerConfig::default()
        };
        let problems = config.problems().join("\n");
        for expected in [
            "containers.proc_root: host/proc must be an absolute path",
            "containers.max_cgroups must be at most",
            "containers.max_concurrent_lookups must be at most 256",
            "containers.lookup_timeout_ms must be at most 60000",
            "containers.retry_min_ms (120000 ms) must not exceed retry_max_secs (60 s)",
        ] {
            assert!(problems.contains(expected), "{expected}: {problems}");
        }
        assert!(ContainerConfig::default().problems().is_empty());
    }

    #[test]
    fn a_resolver_outside_a_tokio_runtime_is_refused() {
        let host = FakeHost::new();
        let err = ContainerResolver::new(host.config(vec![]))
            .err()
            .expect("refused");
        assert!(matches!(err, ResolverError::NoTokioRuntime), "{err}");
    }

    #[test]
    fn config_defaults_fill_missing_fields_and_unknown_fields_are_rejected() {
        let config: ContainerConfig =
            serde_json::from_str(r#"{"endpoints":[{"kind":"cri-o","socket":"/x.sock"}]}"#).unwrap();
        assert_eq!(config.endpoints, [Endpoint::new(ApiKind::CriO, "/x.sock")]);
        assert_eq!(config.max_cgroups, ContainerConfig::default().max_cgroups);
        assert!(serde_json::from_str::<ContainerConfig>(r#"{"bogus":1}"#).is_err());
    }
}
