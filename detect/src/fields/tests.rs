use kestrel_proto::event::Payload;
use kestrel_proto::{
    Ancestor, Container, CredentialEvent, Credentials, Event, ExecEvent, ExitEvent, FileEvent,
    FileOp, NetworkEvent, NetworkOp, Process,
};

use super::*;

fn exec_event(argv: &[&str], ancestors: Vec<Ancestor>) -> Event {
    Event {
        process: Some(Process {
            tgid: 4242,
            ppid: 7,
            user: "Alice".into(),
            exe: "/usr/bin/Cat".into(),
            cwd: "/home/alice".into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            exec_id: "e-1".into(),
            tty: "pts/3".into(),
            login_uid: Some(1000),
            login_user: "alice".into(),
            audit_session_id: Some(12),
            ..Default::default()
        }),
        payload: Some(Payload::Exec(ExecEvent {
            ancestors,
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn values(event: &Event) -> FieldValues {
    let mut values = FieldValues::default();
    values.load();
    let all: Vec<Field> = FIELDS.iter().map(|d| d.field).collect();
    values.fill(event, &EventContext::default(), &all);
    values
}

fn raw(values: &FieldValues, field: Field) -> Option<String> {
    values.get(field).map(|v| v.raw.to_string())
}

#[test]
fn table_is_in_variant_order_and_names_are_unique() {
    let mut seen = std::collections::HashSet::new();
    for (i, def) in FIELDS.iter().enumerate() {
        assert_eq!(def.field.index(), i, "{}", def.names[0]);
        for name in def.names {
            assert!(seen.insert(*name), "{name} is in the table twice");
            assert_eq!(Field::from_name(name), Some(def.field));
        }
    }
    assert_eq!(Field::from_name("commandline"), None);
    for (name, _) in NOT_PRODUCED {
        assert_eq!(Field::from_name(name), None, "{name} is produced after all");
    }
    assert_eq!(Field::from_name("ProcessGuid"), Some(Field::ExecId));
}

#[test]
fn exec_fields_map_to_process_and_first_ancestor() {
    let parent = Ancestor {
        exe: "/bin/bash".into(),
        argv: vec!["bash".into(), "-i".into()],
        user: "root".into(),
        ..Default::default()
    };
    let grandparent = Ancestor {
        exe: "/usr/sbin/sshd".into(),
        ..Default::default()
    };
    let event = exec_event(&["cat", "/etc/Shadow"], vec![parent, grandparent]);
    let v = values(&event);
    assert_eq!(raw(&v, Field::Image).as_deref(), Some("/usr/bin/Cat"));
    assert_eq!(
        raw(&v, Field::CommandLine).as_deref(),
        Some("cat /etc/Shadow")
    );
    assert_eq!(raw(&v, Field::ParentImage).as_deref(), Some("/bin/bash"));
    assert_eq!(
        raw(&v, Field::ParentCommandLine).as_deref(),
        Some("bash -i")
    );
    assert_eq!(
        raw(&v, Field::GrandparentImage).as_deref(),
        Some("/usr/sbin/sshd")
    );
    assert_eq!(raw(&v, Field::User).as_deref(), Some("Alice"));
    assert_eq!(
        raw(&v, Field::CurrentDirectory).as_deref(),
        Some("/home/alice")
    );
    assert_eq!(raw(&v, Field::ProcessId).as_deref(), Some("4242"));
    assert_eq!(raw(&v, Field::ParentProcessId).as_deref(), Some("7"));
    assert_eq!(raw(&v, Field::ParentUser).as_deref(), Some("root"));
    assert_eq!(raw(&v, Field::ExecId).as_deref(), Some("e-1"));
    assert_eq!(raw(&v, Field::Terminal).as_deref(), Some("pts/3"));
    assert_eq!(raw(&v, Field::LogonId).as_deref(), Some("1000"));
    assert_eq!(raw(&v, Field::LoginUser).as_deref(), Some("alice"));
    assert_eq!(raw(&v, Field::LoginSessionId).as_deref(), Some("12"));
    assert_eq!(v.get(Field::CommandLine).unwrap().lower, "cat /etc/shadow");
    assert_eq!(raw(&v, Field::TargetFilename), None);
    assert_eq!(raw(&v, Field::ContainerId), None);
    assert_eq!(raw(&v, Field::SessionExecId), None);
}

#[test]
fn parent_fields_are_absent_without_ancestors() {
    let v = values(&exec_event(&["ls"], Vec::new()));
    assert!(v.get(Field::ParentImage).is_none());
    assert!(v.get(Field::ParentUser).is_none());
    assert!(v.get(Field::Image).is_some());
}

#[test]
fn login_fields_are_absent_outside_a_login() {
    let mut event = exec_event(&["cron"], Vec::new());
    let process = event.process.as_mut().unwrap();
    (process.login_uid, process.audit_session_id) = (None, None);
    process.login_user.clear();
    let v = values(&event);
    for field in [Field::LogonId, Field::LoginUser, Field::LoginSessionId] {
        assert!(v.get(field).is_none(), "{field:?}");
    }
}

fn file_event(op: FileOp, path: &str, target: &str, mode: u32) -> Event {
    Event {
        process: Some(Process::default()),
        payload: Some(Payload::File(FileEvent {
            op: op as i32,
            path: path.into(),
            target_path: target.into(),
            mode,
            ..Default::default()
        })),
        ..Default::default()
    }
}

#[test]
fn rename_and_link_name_the_new_file_target() {
    let v = values(&file_event(
        FileOp::FileRename,
        "/tmp/a",
        "/etc/cron.d/a",
        0,
    ));
    assert_eq!(
        raw(&v, Field::TargetFilename).as_deref(),
        Some("/etc/cron.d/a")
    );
    assert_eq!(raw(&v, Field::SourceFilename).as_deref(), Some("/tmp/a"));
    assert_eq!(raw(&v, Field::FileOperation).as_deref(), Some("rename"));
    let v = values(&file_event(FileOp::FileSymlink, "/tmp/l", "/etc/shadow", 0));
    assert_eq!(raw(&v, Field::TargetFilename).as_deref(), Some("/tmp/l"));
    assert_eq!(
        raw(&v, Field::SourceFilename).as_deref(),
        Some("/etc/shadow")
    );
    let v = values(&file_event(FileOp::FileUnlink, "/var/log/wtmp", "", 0));
    assert_eq!(raw(&v, Field::SourceFilename), None);
}

#[test]
fn chmod_mode_is_octal_with_flag_words() {
    let v = values(&file_event(FileOp::FileChmod, "/tmp/x", "", 0o104755));
    assert_eq!(raw(&v, Field::FileMode).as_deref(), Some("4755"));
    assert_eq!(
        raw(&v, Field::FileModeFlags).as_deref(),
        Some("setuid executable")
    );
    let v = values(&file_event(FileOp::FileChmod, "/tmp/x", "", 0o644));
    assert_eq!(raw(&v, Field::FileModeFlags).as_deref(), Some(""));
    let v = values(&file_event(FileOp::FileUnlink, "/tmp/x", "", 0o755));
    assert_eq!(raw(&v, Field::FileMode), None, "unlink sets no mode");
}

#[test]
fn network_fields_follow_sysmon_direction() {
    let event = Event {
        payload: Some(Payload::Network(NetworkEvent {
            op: NetworkOp::NetworkConnect as i32,
            protocol: 6,
            local_ip: "10.0.0.2".into(),
            local_port: 40000,
            remote_ip: "2001:db8::1".into(),
            remote_port: 443,
            initiated: true,
            ..Default::default()
        })),
        ..Default::default()
    };
    let v = values(&event);
    assert_eq!(raw(&v, Field::SourceIp).as_deref(), Some("10.0.0.2"));
    assert_eq!(raw(&v, Field::SourcePort).as_deref(), Some("40000"));
    assert_eq!(
        raw(&v, Field::DestinationIp).as_deref(),
        Some("2001:db8::1")
    );
    assert_eq!(raw(&v, Field::DestinationPort).as_deref(), Some("443"));
    assert_eq!(raw(&v, Field::Protocol).as_deref(), Some("tcp"));
    assert_eq!(raw(&v, Field::Initiated).as_deref(), Some("true"));
    assert_eq!(raw(&v, Field::DestinationIsIpv6).as_deref(), Some("true"));
    assert_eq!(raw(&v, Field::SourceIsIpv6).as_deref(), Some("false"));
    assert_eq!(raw(&v, Field::NetworkOperation).as_deref(), Some("connect"));
    assert_eq!(raw(&v, Field::Image), None, "no process context");
    assert_eq!(raw(&v, Field::DestinationHostname), None, "not resolved");
}

#[test]
fn dns_answers_and_resolved_destinations_have_their_fields() {
    let answer = Event {
        payload: Some(Payload::Network(NetworkEvent {
            op: NetworkOp::NetworkDnsAnswer as i32,
            remote_ip: "127.0.0.53".into(),
            remote_port: 53,
            dns: Some(kestrel_proto::DnsAnswer {
                query: "tunnel.us.ngrok.com".into(),
                query_type: 1,
                rcode: 0,
                answers: vec!["edge.ngrok.example".into(), "3.20.1.5".into()],
                truncated: false,
            }),
            ..Default::default()
        })),
        ..Default::default()
    };
    let v = values(&answer);
    assert_eq!(
        raw(&v, Field::QueryName).as_deref(),
        Some("tunnel.us.ngrok.com")
    );
    assert_eq!(
        raw(&v, Field::QueryResults).as_deref(),
        Some("edge.ngrok.example;3.20.1.5")
    );
    assert_eq!(raw(&v, Field::QueryStatus).as_deref(), Some("0"));
    assert_eq!(
        raw(&v, Field::NetworkOperation).as_deref(),
        Some("dns_answer")
    );
    let connect = Event {
        payload: Some(Payload::Network(NetworkEvent {
            op: NetworkOp::NetworkConnect as i32,
            remote_ip: "3.20.1.5".into(),
            remote_port: 443,
            remote_hostname: "tunnel.us.ngrok.com".into(),
            ..Default::default()
        })),
        ..Default::default()
    };
    let v = values(&connect);
    assert_eq!(
        raw(&v, Field::DestinationHostname).as_deref(),
        Some("tunnel.us.ngrok.com")
    );
    assert_eq!(raw(&v, Field::QueryName), None);
}

#[test]
fn credential_change_reports_gained_capabilities() {
    let event = Event {
        payload: Some(Payload::Credential(CredentialEvent {
            syscall: "capset".into(),
            old: Some(Credentials {
                cap_effective: 1 << 13,
                ..Default::default()
            }),
            new: Some(Credentials {
                cap_effective: (1 << 13) | (1 << 21),
                euid: 0,
                ..Default::default()
            }),
            ..Default::default()
        })),
        ..Default::default()
    };
    let v = values(&event);
    assert_eq!(
        raw(&v, Field::CapabilitiesGained).as_deref(),
        Some("cap_sys_admin")
    );
    assert_eq!(
        raw(&v, Field::NewCapabilities).as_deref(),
        Some("cap_net_raw cap_sys_admin")
    );
    assert_eq!(raw(&v, Field::Syscall).as_deref(), Some("capset"));
}

#[test]
fn container_fields_come_from_the_container_context() {
    let mut event = exec_event(&["sh"], Vec::new());
    event.container = Some(Container {
        id: "abc".into(),
        name: "web".into(),
        ..Default::default()
    });
    let v = values(&event);
    assert_eq!(raw(&v, Field::ContainerId).as_deref(), Some("abc"));
    assert_eq!(raw(&v, Field::ContainerName).as_deref(), Some("web"));
    assert_eq!(raw(&v, Field::PodName), None);
}

#[test]
fn kubernetes_fields_come_from_the_pod_metadata_in_the_container_context() {
    let mut event = exec_event(&["sh"], Vec::new());
    event.container = Some(Container {
        id: "abc".into(),
        pod_labels: [("tier", "front"), ("app", "web")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into(),
        workload_kind: "Deployment".into(),
        workload_name: "web".into(),
        service_account: "web-sa".into(),
        node_name: "node-1".into(),
        ..Default::default()
    });
    let v = values(&event);
    assert_eq!(
        raw(&v, Field::PodLabels).as_deref(),
        Some("app=web tier=front")
    );
    assert_eq!(raw(&v, Field::WorkloadKind).as_deref(), Some("Deployment"));
    assert_eq!(raw(&v, Field::WorkloadName).as_deref(), Some("web"));
    assert_eq!(raw(&v, Field::ServiceAccount).as_deref(), Some("web-sa"));
    assert_eq!(raw(&v, Field::NodeName).as_deref(), Some("node-1"));
    event.container = Some(Container {
        id: "abc".into(),
        ..Default::default()
    });
    let v = values(&event);
    for field in [
        Field::PodLabels,
        Field::WorkloadKind,
        Field::ServiceAccount,
        Field::NodeName,
    ] {
        assert_eq!(raw(&v, field), None, "{field:?}");
    }
}

#[test]
fn exit_fields() {
    let event = Event {
        payload: Some(Payload::Exit(ExitEvent {
            code: 0,
            signal: 9,
            core_dumped: false,
        })),
        ..Default::default()
    };
    let v = values(&event);
    assert_eq!(raw(&v, Field::ExitSignal).as_deref(), Some("9"));
    assert_eq!(raw(&v, Field::CoreDumped).as_deref(), Some("false"));
}

#[test]
fn values_from_the_previous_event_are_not_reused() {
    let mut values = FieldValues::default();
    values.load();
    values.fill(
        &exec_event(&["a"], Vec::new()),
        &EventContext::default(),
        &[Field::CommandLine],
    );
    assert_eq!(values.get(Field::CommandLine).unwrap().raw, "a");
    values.load();
    values.fill(
        &exec_event(&["b", "C"], Vec::new()),
        &EventContext::default(),
        &[Field::CommandLine],
    );
    let v = values.get(Field::CommandLine).unwrap();
    assert_eq!((v.raw, v.lower), ("b C", "b c"));
}

#[test]
fn signal_and_ptrace_targets_are_named_when_the_agent_knew_them() {
    let signal = Event {
        payload: Some(Payload::Signal(kestrel_proto::SignalEvent {
            target_pid: 612,
            signal: 9,
            target_exe: "/usr/sbin/auditd".into(),
            target_argv: vec!["/sbin/auditd".into(), "-n".into()],
            ..Default::default()
        })),
        ..Default::default()
    };
    let v = values(&signal);
    assert_eq!(
        raw(&v, Field::TargetImage).as_deref(),
        Some("/usr/sbin/auditd")
    );
    assert_eq!(
        raw(&v, Field::TargetCommandLine).as_deref(),
        Some("/sbin/auditd -n")
    );
    let unknown = Event {
        payload: Some(Payload::Ptrace(kestrel_proto::PtraceEvent {
            target_pid: 99,
            ..Default::default()
        })),
        ..Default::default()
    };
    let v = values(&unknown);
    assert_eq!(raw(&v, Field::TargetImage), None);
    assert_eq!(raw(&v, Field::TargetCommandLine), None);
    assert_eq!(raw(&v, Field::TargetProcessId).as_deref(), Some("99"));
}
