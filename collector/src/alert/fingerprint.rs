//! Alert fingerprints: the same rule firing on the same host for the same subject gets the same
//! fingerprint, so repeats fold into one alert and downstream tools (PagerDuty `dedup_key`,
//! GitLab `fingerprint`) group them.
//!
//! The fingerprint is the first 128 bits of SHA-256 over a versioned, NUL-separated list of
//! parts, in hex:
//! - detection rules: rule id, host, the session (`SessionExecId`: the exec id of the process
//!   just below the nearest session boundary such as sshd, login, cron, tmux or a container
//!   runtime; the parent's execution when the session is unknown), executable, command line,
//!   user, container id;
//! - correlation rules: rule id, host, group key;
//! - system alerts: rule id, host, group.
//!
//! Process ids, parents and times are left out on purpose: `cat /etc/shadow` run twice from one
//! session (a loop, a script, or many short-lived `sh -c` shells started by one login shell) is
//! one finding; run from another session it is another.

use sha2::{Digest, Sha256};

/// What a detection rule fired on, as far as it tells one finding from another (see the
/// module doc for why process ids and times are not part of it).
#[derive(Debug, Clone, Copy, Default)]
pub struct Subject<'a> {
    /// The session (`SessionExecId`), or the parent's execution (`parent_exec_id`) when the
    /// session is unknown: one session, one finding.
    pub session: &'a str,
    /// The process's executable.
    pub exe: &'a str,
    /// Its command line.
    pub command_line: &'a str,
    /// Its user.
    pub user: &'a str,
    /// Its container id; empty on the host.
    pub container_id: &'a str,
}

/// Fingerprint of a detection (or correlation, when `group` is set).
pub fn of_detection(rule_id: &str, host: &str, group: Option<&str>, subject: &Subject) -> String {
    match group {
        Some(group) => hash(&["v1", "correlation", rule_id, host, group]),
        None => hash(&[
            "v2",
            "detection",
            rule_id,
            host,
            subject.session,
            subject.exe,
            subject.command_line,
            subject.user,
            subject.container_id,
        ]),
    }
}

/// Fingerprint of a system alert.
pub fn of_system(rule_id: &str, host: &str, group: Option<&str>) -> String {
    hash(&["v1", "system", rule_id, host, group.unwrap_or("")])
}

fn hash(parts: &[&str]) -> String {
    let mut digest = Sha256::new();
    for part in parts {
        digest.update(part.as_bytes());
        digest.update([0]);
    }
    digest.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(cmd: &str) -> Subject<'_> {
        Subject {
            exe: "/usr/bin/cat",
            command_line: cmd,
            user: "alice",
            ..Subject::default()
        }
    }

    #[test]
    fn same_rule_host_and_subject_give_the_same_128_bit_hex_fingerprint() {
        let a = of_detection("r", "h", None, &process("cat /etc/shadow"));
        let b = of_detection("r", "h", None, &process("cat /etc/shadow"));
        assert_eq!(a, b);
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn another_host_command_or_rule_is_another_fingerprint() {
        let base = of_detection("r", "h", None, &process("cat /etc/shadow"));
        assert_ne!(
            base,
            of_detection("r", "h2", None, &process("cat /etc/shadow"))
        );
        assert_ne!(
            base,
            of_detection("r", "h", None, &process("cat /etc/gshadow"))
        );
        assert_ne!(
            base,
            of_detection("r2", "h", None, &process("cat /etc/shadow"))
        );
    }

    #[test]
    fn the_same_command_from_another_session_is_another_finding() {
        let other = Subject {
            session: "exec-of-another-login-shell",
            ..process("cat /etc/shadow")
        };
        assert_ne!(
            of_detection("r", "h", None, &process("cat /etc/shadow")),
            of_detection("r", "h", None, &other)
        );
    }

    #[test]
    fn parts_cannot_be_shifted_into_each_other() {
        assert_ne!(of_system("ab", "c", None), of_system("a", "bc", None));
    }
}
