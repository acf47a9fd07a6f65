//! Human-readable views of an alert shared by the CLI and the chat/ticket sinks.

use super::Alert;
use crate::text::escape;

/// Longest command line shown per process in the tree (the record keeps it whole).
pub const MAX_COMMAND_CHARS: usize = 200;

/// One process of the tree, as rendered.
struct Node<'a> {
    pid: u32,
    user: &'a str,
    command_line: &'a str,
    exe: &'a str,
    start_time: &'a str,
    /// Controlling terminal; known for the alert's own process only.
    tty: &'a str,
    /// Who logged in (user name, else login uid), when it is another user than `user`; known
    /// for the alert's own process only.
    login: String,
}

/// The process tree, oldest ancestor first, one line per process, indented like `tree(1)`;
/// the alert's own process is marked with `◀`. Empty for alerts without a process.
pub fn process_tree(alert: &Alert) -> String {
    if alert.process.pid == 0 && alert.process.exe.is_empty() {
        return String::new();
    }
    let mut nodes: Vec<Node<'_>> = alert
        .ancestors
        .iter()
        .rev()
        .map(|a| Node {
            pid: a.pid,
            user: &a.user,
            command_line: &a.command_line,
            exe: &a.exe,
            start_time: &a.start_time,
            tty: "",
            login: String::new(),
        })
        .collect();
    let p = &alert.process;
    nodes.push(Node {
        pid: p.pid,
        user: &p.user,
        command_line: &p.command_line,
        exe: &p.exe,
        start_time: &p.start_time,
        tty: &p.tty,
        login: match (&p.login_user, p.login_uid) {
            (name, Some(uid)) if uid != p.uid || (!name.is_empty() && name != &p.user) => {
                if name.is_empty() {
                    format!("uid {uid}")
                } else {
                    name.clone()
                }
            }
            _ => String::new(),
        },
    });
    let last = nodes.len() - 1;
    let mut out = String::new();
    for (depth, node) in nodes.iter().enumerate() {
        let indent = if depth == 0 {
            String::new()
        } else {
            format!("{}└─ ", "   ".repeat(depth - 1))
        };
        // Every field is the agent's word: a line break or control character in it is written
        // visibly, so it cannot forge processes in the tree or act on the reader's terminal.
        let user = if node.user.is_empty() { "?" } else { node.user };
        let user = escape(user);
        let command = if node.command_line.is_empty() {
            node.exe
        } else {
            node.command_line
        };
        let command = truncate(&escape(command), MAX_COMMAND_CHARS);
        let mut line = format!("{indent}[{}] {user}  {command}", node.pid);
        let mut about = Vec::new();
        if !node.exe.is_empty() {
            about.push(escape(node.exe).into_owned());
        }
        if !node.start_time.is_empty() {
            about.push(format!("started {}", escape(node.start_time)));
        }
        if !node.tty.is_empty() {
            about.push(format!("on {}", escape(node.tty)));
        }
        if !node.login.is_empty() {
            about.push(format!("logged in as {}", escape(&node.login)));
        }
        if !about.is_empty() {
            line.push_str(&format!("  ({})", about.join(", ")));
        }
        if depth == last {
            line.push_str("  ◀");
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// `T1003.008 Credential Access, …` from the alert's ATT&CK references (empty when none).
pub fn attack_summary(alert: &Alert) -> String {
    alert
        .finding_info
        .attacks
        .iter()
        .map(|a| {
            let technique = a
                .sub_technique
                .as_ref()
                .or(a.technique.as_ref())
                .map(|t| t.uid.clone());
            let tactic = a.tactic.as_ref().map(|t| t.name.clone());
            [technique, tactic]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A plain-text description for tickets: the rule description, host, process tree, ATT&CK.
pub fn description(alert: &Alert) -> String {
    let mut text = String::new();
    if !alert.rule.description.trim().is_empty() {
        text.push_str(alert.rule.description.trim());
        text.push_str("\n\n");
    }
    text.push_str(&format!("Host: {}\n", escape(&alert.host)));
    if let Some(c) = &alert.container {
        text.push_str(&format!(
            "Container: {} ({}) image {}",
            escape(&c.name),
            escape(&c.id),
            escape(&c.image)
        ));
        if !c.pod_name.is_empty() {
            text.push_str(&format!(
                ", pod {}/{}",
                escape(&c.pod_namespace),
                escape(&c.pod_name)
            ));
        }
        if !c.workload_kind.is_empty() {
            text.push_str(&format!(
                " of {} {}",
                escape(&c.workload_kind),
                escape(&c.workload_name)
            ));
        }
        if !c.service_account.is_empty() {
            text.push_str(&format!(", service account {}", escape(&c.service_account)));
        }
        text.push('\n');
    }
    text.push_str(&format!(
        "Rule: {} ({}), level {}\n",
        alert.rule.title, alert.rule.id, alert.rule.level
    ));
    let attack = attack_summary(alert);
    if !attack.is_empty() {
        text.push_str(&format!("ATT&CK: {attack}\n"));
    }
    if alert.count > 1 {
        text.push_str(&format!("Occurrences: {}\n", alert.count));
    }
    let tree = process_tree(alert);
    if !tree.is_empty() {
        text.push_str("\nProcess tree:\n");
        text.push_str(&tree);
    }
    text.push_str(&format!(
        "\nFingerprint: {}\nAlert: {}\n",
        alert.fingerprint(),
        alert.uid()
    ));
    text
}

/// Cuts `text` to at most `max` characters, marking the cut with `…`.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_marks_the_cut_and_keeps_short_text() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abcdef", 4).chars().count(), 4);
    }
}
