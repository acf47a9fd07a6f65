//! The agent's configuration file (`--config F`, TOML). Every field has a default, so an
//! empty file (or none) gives a working agent; unknown fields are errors, and validation
//! reports every problem at once.

use std::path::{Path, PathBuf};

use kestrel_ebpf_abi::{KIND_NAMES, KIND_SLOTS, PREFIX_MAX, PREFIX_SLOTS};
use kestrel_service::logging::LogFormat;
use serde::Deserialize;

use crate::{
    enrich::{container::ContainerConfig, kubernetes::KubernetesConfig},
    ship::spool::{priority::Priorities, SpoolSettings},
};

/// Every event kind by its configuration name (the ABI's kinds and names).
pub fn kinds() -> impl Iterator<Item = (&'static str, u32)> {
    (1..KIND_SLOTS).map(|kind| (KIND_NAMES[kind as usize], kind))
}

/// What the agent observes and what it leaves out, decided in the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Event kinds to report (names from [`kinds`]). Default: all of them.
    pub kinds: Vec<String>,
    /// Path prefixes whose read-only opens are reported (writes are always reported).
    /// Default: the shadow files, sudoers (and sudoers.d) and SSH host keys.
    pub sensitive_paths: Vec<String>,
    /// File-name prefixes whose read-only opens are reported wherever they are.
    /// Default: SSH user private keys (`id_rsa`, `id_ecdsa`, `id_ed25519`, `id_dsa`).
    pub sensitive_names: Vec<String>,
    /// Path prefixes whose file events are never reported (noisy scratch areas).
    pub muted_paths: Vec<String>,
    /// Executables whose processes are never reported (matched by device and inode, so a
    /// renamed copy is not muted).
    pub muted_executables: Vec<PathBuf>,
    /// Capture DNS answers (and so name the hosts of connections). Default: on. Every
    /// `recvfrom`/`recvmsg` on the host then passes through the agent's hooks (about 1 µs on a
    /// stream receive, 2 µs on a datagram here: the `syscall_overhead` bench); off, those
    /// hooks are not attached at all.
    pub dns_answers: bool,
    /// How container context is looked up (runtime sockets, cache sizes).
    pub containers: ContainerConfig,
    /// Kubernetes metadata of this node's pods from the API server (labels, owner workload,
    /// service account, node): off unless in a cluster or configured.
    pub kubernetes: KubernetesConfig,
    /// Where events wait for the collector and what is shed first when that fills
    /// (`--spool*` flags override).
    pub spool: SpoolSettings,
    /// Log lines as `text` (default) or `json` (`--log-format` overrides).
    pub log_format: LogFormat,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            kinds: kinds().map(|(name, _)| name.to_string()).collect(),
            sensitive_paths: [
                "/etc/shadow",
                "/etc/gshadow",
                "/etc/sudoers",
                "/etc/ssh/ssh_host_",
            ]
            .map(String::from)
            .to_vec(),
            // File names catch reads by a relative path too (`cd /etc; cat shadow`).
            sensitive_names: [
                "shadow",
                "gshadow",
                "sudoers",
                "ssh_host_",
                "id_rsa",
                "id_ecdsa",
                "id_ed25519",
                "id_dsa",
            ]
            .map(String::from)
            .to_vec(),
            muted_paths: Vec::new(),
            muted_executables: Vec::new(),
            dns_answers: true,
            containers: ContainerConfig::default(),
            kubernetes: KubernetesConfig::default(),
            spool: SpoolSettings::default(),
            log_format: LogFormat::default(),
        }
    }
}

/// The configuration file is unreadable or invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("config {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    /// Values that parse but cannot be used; every problem is listed.
    #[error("config {path}: {}", problems.join("; "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

impl AgentConfig {
    /// Reads and validates a TOML configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config: AgentConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems,
            })
        }
    }

    /// Everything wrong with the values (empty when valid).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for kind in &self.kinds {
            if !kinds().any(|(name, _)| name == kind) {
                let known: Vec<&str> = kinds().map(|(n, _)| n).collect();
                problems.push(format!(
                    "kinds: unknown kind '{kind}' (known: {})",
                    known.join(", ")
                ));
            }
        }
        for (field, list) in [
            ("sensitive_paths", &self.sensitive_paths),
            ("sensitive_names", &self.sensitive_names),
            ("muted_paths", &self.muted_paths),
        ] {
            if list.len() > PREFIX_SLOTS as usize {
                problems.push(format!(
                    "{field}: at most {PREFIX_SLOTS} entries, got {}",
                    list.len()
                ));
            }
            for entry in list {
                if entry.is_empty() || entry.len() > PREFIX_MAX {
                    problems.push(format!(
                        "{field}: '{entry}' must be 1 to {PREFIX_MAX} bytes"
                    ));
                }
                if field != "sensitive_names" && !entry.starts_with('/') {
                    problems.push(format!("{field}: '{entry}' is not an absolute path"));
                }
            }
        }
        let spool = &self.spool;
        for (field, value) in [
            ("max_bytes", spool.max_bytes),
            ("segment_bytes", spool.segment_bytes),
        ] {
            if value.map(|size| size.as_u64()) == Some(0) {
                problems.push(format!("spool.{field}: must be positive"));
            }
        }
        for (kind, tier) in &spool.priority {
            if let Err(e) = Priorities::default().set(&format!("{kind}={tier}")) {
                problems.push(format!("spool.priority: {e}"));
            }
        }
        problems.extend(self.containers.problems());
        problems.extend(self.kubernetes.problems());
        problems
    }

    /// The kinds as the kernel's bit mask.
    pub fn kind_mask(&self) -> u32 {
        kinds()
            .filter(|(name, _)| self.kinds.iter().any(|k| k == name))
            .fold(0, |mask, (_, kind)| mask | 1 << kind)
    }
}

/// Parses a byte size as a flag takes it: `268435456`, `256MiB`, `256 MiB`, `8MB`, `1.5GiB`.
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    text.parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|e| format!("'{text}' is not a byte size (e.g. 8388608, 8MiB): {e}"))
}

/// [`parse_byte_size`] for a size the kernel takes as 32 bits (the ring buffer's).
pub fn parse_byte_size_u32(text: &str) -> Result<u32, String> {
    let bytes = parse_byte_size(text)?;
    u32::try_from(bytes).map_err(|_| format!("'{text}' is more than 4 GiB - 1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_enable_every_kind_and_watch_shadow_and_ssh_keys() {
        let config = AgentConfig::default();
        assert!(config.problems().is_empty());
        assert_eq!(config.kind_mask().count_ones(), kinds().count() as u32);
        assert!(config.sensitive_paths.contains(&"/etc/shadow".to_string()));
        assert!(config.sensitive_names.contains(&"id_ed25519".to_string()));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "kinds = [\"exec\", \"telepathy\"]\nmuted_paths = [\"relative\"]\n\
             [spool]\nmax_bytes = 0\npriority = { file = \"urgent\" }\n",
        )
        .unwrap();
        let err = AgentConfig::load(&path).unwrap_err().to_string();
        for needle in [
            "telepathy",
            "relative",
            "agent.toml",
            "spool.max_bytes",
            "urgent",
        ] {
            assert!(err.contains(needle), "{needle} missing: {err}");
        }
    }

    #[test]
    fn spool_settings_come_from_the_file_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "[spool]\ndir = \"/var/lib/kestrel/spool\"\nmax_bytes = 1048576\n\
             segment_bytes = 65536\npriority = { file = \"high\", exec = \"low\" }\n",
        )
        .unwrap();
        let file = AgentConfig::load(&path).unwrap().spool;
        let flags = crate::ship::shipper::DeliveryArgs {
            spool: None,
            spool_max_bytes: Some(2 << 20),
            spool_segment_bytes: None,
            spool_priority: vec!["exec=high".into()],
            heartbeat_interval: std::time::Duration::from_secs(10),
        };
        let merged = flags.with_file(&file);
        assert_eq!(
            merged.spool.as_deref(),
            Some(Path::new("/var/lib/kestrel/spool"))
        );
        let spool = merged.spool_config().unwrap();
        assert_eq!((spool.max_bytes, spool.segment_bytes), (2 << 20, 65536));
        let tier = |kind| {
            spool
                .priorities
                .tier(crate::ship::spool::priority::kind_code(kind))
        };
        assert_eq!(tier("file"), "high".parse().unwrap());
        assert_eq!(tier("exec"), "high".parse().unwrap(), "the flag wins");
    }

    #[test]
    fn byte_sizes_take_units_in_the_file_and_on_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "[spool]\nmax_bytes = \"256MiB\"\nsegment_bytes = 65536\n",
        )
        .unwrap();
        let spool = AgentConfig::load(&path).unwrap().spool;
        assert_eq!(spool.max_bytes.map(|b| b.as_u64()), Some(256 << 20));
        assert_eq!(spool.segment_bytes.map(|b| b.as_u64()), Some(65536));
        std::fs::write(&path, "[spool]\nmax_bytes = \"lots\"\n").unwrap();
        let err = AgentConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("max_bytes") && err.contains("lots"), "{err}");

        assert_eq!(parse_byte_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_byte_size("256 MiB"), Ok(256 << 20));
        assert_eq!(parse_byte_size("4096"), Ok(4096));
        assert!(parse_byte_size("-1")
            .unwrap_err()
            .contains("'-1' is not a byte size"));
        assert_eq!(parse_byte_size_u32("4MiB"), Ok(4 << 20));
        assert!(parse_byte_size_u32("8GiB")
            .unwrap_err()
            .contains("more than 4 GiB"));
    }

    #[test]
    fn the_kubernetes_section_is_read_and_checked_with_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "[kubernetes]\napi_server = \"http://127.0.0.1:8001\"\nnode_name = \"node-1\"\n\
             max_pods = 200\n",
        )
        .unwrap();
        let kubernetes = AgentConfig::load(&path).unwrap().kubernetes;
        assert_eq!(kubernetes.max_pods, 200);
        assert_eq!(kubernetes.node_name.as_deref(), Some("node-1"));
        std::fs::write(
            &path,
            "[kubernetes]\nmax_pods = 0\nmax_label_bytes = 100000\n",
        )
        .unwrap();
        let err = AgentConfig::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("kubernetes.max_pods") && err.contains("kubernetes.max_label_bytes"),
            "{err}"
        );
    }

    #[test]
    fn unknown_fields_are_rejected_with_the_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "kindz = []\n").unwrap();
        let err = AgentConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("agent.toml") && err.contains("kindz"), "{err}");
    }
}
