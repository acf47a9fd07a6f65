//! Writing a field's value from an event: the process context, the container, and each
//! payload kind's fields.

use std::fmt::Write as _;

use kestrel_proto::event::Payload;
use kestrel_proto::{
    Ancestor, Credentials, Event, ExecEvent, FileEvent, FileOp, NetworkEvent, NetworkOp, Process,
};

use super::catalogue::Field;
use super::words::{
    capability_names, file_op_name, namespace_names, network_op_name, ptrace_request_name,
    push_words, signal_name,
};
use crate::calendar::utc_time_into;

/// Context the event alone does not carry, supplied by the detector.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct EventContext<'c> {
    /// The process's session root exec id, when the detector knows it.
    pub(crate) session: Option<&'c str>,
}

/// Writes the value of `field` into `out` (empty on entry); false when the event lacks it.
pub(super) fn compute(
    field: Field,
    event: &Event,
    ctx: &EventContext<'_>,
    out: &mut String,
) -> bool {
    use Field as F;
    let process = event.process.as_ref();
    match field {
        F::Image => text(out, process.map(|p| p.exe.as_str())),
        F::CommandLine => process.is_some_and(|p| join_into(out, &p.argv)),
        F::User => text(out, process.map(|p| p.user.as_str())),
        F::UserId => number(out, process.map(|p| p.uid)),
        F::EffectiveUserId => number(out, process.map(|p| p.euid)),
        F::GroupId => number(out, process.map(|p| p.gid)),
        F::ProcessName => text(out, process.map(|p| p.comm.as_str())),
        F::CurrentDirectory => text(out, process.map(|p| p.cwd.as_str())),
        F::Terminal => non_empty(out, process.map(|p| p.tty.as_str())),
        F::LogonId => number(out, process.and_then(|p| p.login_uid)),
        F::LoginUser => non_empty(out, process.map(|p| p.login_user.as_str())),
        F::LoginSessionId => number(out, process.and_then(|p| p.audit_session_id)),
        F::ProcessId => number(out, process.map(|p| p.tgid)),
        F::ParentProcessId => number(out, process.map(|p| p.ppid)),
        F::ExecId => non_empty(out, process.map(|p| p.exec_id.as_str())),
        F::ParentExecId => non_empty(out, process.map(|p| p.parent_exec_id.as_str())),
        F::SessionExecId => non_empty(out, ctx.session),
        F::Host => non_empty(out, Some(event.host.as_str())),
        F::UtcTime => {
            utc_time_into(out, event.time_unix_ns);
            true
        }
        F::ContainerId => non_empty(out, container_id(event, process)),
        F::ContainerName => non_empty(out, event.container.as_ref().map(|c| c.name.as_str())),
        F::ContainerImage => non_empty(out, event.container.as_ref().map(|c| c.image.as_str())),
        F::ContainerRuntime => non_empty(out, event.container.as_ref().map(|c| c.runtime.as_str())),
        F::PodName => non_empty(out, event.container.as_ref().map(|c| c.pod_name.as_str())),
        F::PodNamespace => non_empty(
            out,
            event.container.as_ref().map(|c| c.pod_namespace.as_str()),
        ),
        F::PodLabels => event.container.as_ref().is_some_and(|c| {
            for (i, (key, value)) in c.pod_labels.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                let _ = write!(out, "{key}={value}");
            }
            !c.pod_labels.is_empty()
        }),
        F::WorkloadKind => non_empty(
            out,
            event.container.as_ref().map(|c| c.workload_kind.as_str()),
        ),
        F::WorkloadName => non_empty(
            out,
            event.container.as_ref().map(|c| c.workload_name.as_str()),
        ),
        F::ServiceAccount => non_empty(
            out,
            event.container.as_ref().map(|c| c.service_account.as_str()),
        ),
        F::NodeName => non_empty(out, event.container.as_ref().map(|c| c.node_name.as_str())),
        F::Syscall => non_empty(out, syscall(event)),
        F::Result => number(out, result(event)),
        F::ParentImage => text(out, ancestor(event, 0).map(|a| a.exe.as_str())),
        F::ParentCommandLine => ancestor(event, 0).is_some_and(|a| join_into(out, &a.argv)),
        F::ParentUser => text(out, ancestor(event, 0).map(|a| a.user.as_str())),
        F::GrandparentImage => text(out, ancestor(event, 1).map(|a| a.exe.as_str())),
        F::GrandparentCommandLine => ancestor(event, 1).is_some_and(|a| join_into(out, &a.argv)),
        F::ImageDeleted => boolean(out, exec(event).map(|e| e.exe_deleted)),
        F::ImageMemfd => boolean(out, exec(event).map(|e| e.exe_memfd)),
        F::ImageUpperLayer => boolean(out, exec(event).map(|e| e.exe_upper_layer)),
        F::Capabilities => exec(event).is_some_and(|e| {
            capability_names(out, e.cap_effective);
            true
        }),
        F::ExitCode | F::ExitSignal | F::CoreDumped => {
            let Some(Payload::Exit(exit)) = &event.payload else {
                return false;
            };
            match field {
                F::ExitCode => number(out, Some(exit.code)),
                F::ExitSignal => number(out, Some(exit.signal)),
                _ => boolean(out, Some(exit.core_dumped)),
            }
        }
        F::TargetFilename
        | F::SourceFilename
        | F::FileOperation
        | F::FileMode
        | F::FileModeFlags
        | F::FileCreated
        | F::FileTruncated
        | F::FileFlags
        | F::OwnerUid
        | F::OwnerGid
        | F::FsType => match &event.payload {
            Some(Payload::File(file)) => file_field(field, file, out),
            _ => false,
        },
        F::Initiated
        | F::SourceIp
        | F::SourcePort
        | F::DestinationIp
        | F::DestinationPort
        | F::Protocol
        | F::SourceIsIpv6
        | F::DestinationIsIpv6
        | F::NetworkOperation
        | F::DestinationHostname
        | F::QueryName
        | F::QueryResults
        | F::QueryStatus => match &event.payload {
            Some(Payload::Network(net)) => network_field(field, net, out),
            _ => false,
        },
        F::OldUserId
        | F::NewUserId
        | F::OldEffectiveUserId
        | F::NewEffectiveUserId
        | F::OldGroupId
        | F::NewGroupId
        | F::NewCapabilities
        | F::CapabilitiesGained => {
            let Some(Payload::Credential(cred)) = &event.payload else {
                return false;
            };
            let (old, new) = (cred.old.unwrap_or_default(), cred.new.unwrap_or_default());
            credential_field(field, &old, &new, out)
        }
        F::TargetProcessId => match &event.payload {
            Some(Payload::Ptrace(p)) => number(out, Some(p.target_pid)),
            Some(Payload::Signal(s)) => number(out, Some(s.target_pid)),
            _ => false,
        },
        F::TargetImage => match &event.payload {
            Some(Payload::Ptrace(p)) => non_empty(out, Some(p.target_exe.as_str())),
            Some(Payload::Signal(s)) => non_empty(out, Some(s.target_exe.as_str())),
            _ => false,
        },
        F::TargetCommandLine => match &event.payload {
            Some(Payload::Ptrace(p)) if !p.target_argv.is_empty() => join_into(out, &p.target_argv),
            Some(Payload::Signal(s)) if !s.target_argv.is_empty() => join_into(out, &s.target_argv),
            _ => false,
        },
        F::PtraceRequest => match &event.payload {
            Some(Payload::Ptrace(p)) => {
                match (p.syscall.as_str(), ptrace_request_name(p.request)) {
                    ("process_vm_writev", _) => out.push_str("process_vm_writev"),
                    (_, Some(name)) => out.push_str(name),
                    (_, None) => {
                        let _ = write!(out, "{}", p.request);
                    }
                }
                true
            }
            _ => false,
        },
        F::Signal | F::SignalName => match &event.payload {
            Some(Payload::Signal(s)) if field == F::Signal => number(out, Some(s.signal)),
            Some(Payload::Signal(s)) => {
                match signal_name(s.signal) {
                    Some(name) => out.push_str(name),
                    None => {
                        let _ = write!(out, "SIG{}", s.signal);
                    }
                }
                true
            }
            _ => false,
        },
        F::ImageLoaded | F::ModuleParameters => match &event.payload {
            Some(Payload::Module(m)) if field == F::ImageLoaded => {
                non_empty(out, Some(m.path.as_str()))
            }
            Some(Payload::Module(m)) => text(out, Some(m.params.as_str())),
            _ => false,
        },
        F::BpfCommand | F::BpfProgramType | F::BpfProgramName => match &event.payload {
            Some(Payload::Bpf(b)) => match field {
                F::BpfCommand => number(out, Some(b.command)),
                F::BpfProgramType => number(out, Some(b.prog_type)),
                _ => text(out, Some(b.prog_name.as_str())),
            },
            _ => false,
        },
        F::MemfdName | F::MemfdFlags => match &event.payload {
            Some(Payload::Memfd(m)) if field == F::MemfdName => text(out, Some(m.name.as_str())),
            Some(Payload::Memfd(m)) => number(out, Some(m.flags)),
            _ => false,
        },
        F::NamespaceTypes | F::NamespaceFlags => match &event.payload {
            Some(Payload::Namespace(n)) if field == F::NamespaceFlags => number(out, Some(n.flags)),
            Some(Payload::Namespace(n)) => {
                namespace_names(out, n.flags);
                true
            }
            _ => false,
        },
        F::NewProcessName | F::NewNameMatchesImage => match &event.payload {
            Some(Payload::ProcessRename(r)) if field == F::NewProcessName => {
                text(out, Some(r.name.as_str()))
            }
            Some(Payload::ProcessRename(r)) => boolean(
                out,
                Some(name_matches_image(&r.name, process.map(|p| p.exe.as_str()))),
            ),
            _ => false,
        },
        F::IoUringOperation | F::IoUringOpcode | F::IoUringEntries => match &event.payload {
            Some(Payload::IoUring(u)) => match field {
                F::IoUringOperation => text(out, Some(u.op.as_str())),
                F::IoUringOpcode => number(out, Some(u.opcode)),
                _ => number(out, Some(u.entries)),
            },
            _ => false,
        },
    }
}

/// Task names are the executable's file name cut to 15 bytes (`TASK_COMM_LEN` less its NUL).
const TASK_NAME_MAX: usize = 15;

/// Whether `name` is what the kernel names a task running `exe` (its file name, cut to
/// [`TASK_NAME_MAX`] bytes); an unknown executable matches nothing.
fn name_matches_image(name: &str, exe: Option<&str>) -> bool {
    let Some(exe) = exe.filter(|e| !e.is_empty()) else {
        return false;
    };
    let file_name = exe.rsplit('/').next().unwrap_or(exe).as_bytes();
    let cut = &file_name[..file_name.len().min(TASK_NAME_MAX)];
    name.as_bytes() == cut
}

fn text(out: &mut String, value: Option<&str>) -> bool {
    value.is_some_and(|v| {
        out.push_str(v);
        true
    })
}

fn non_empty(out: &mut String, value: Option<&str>) -> bool {
    text(out, value.filter(|v| !v.is_empty()))
}

fn number(out: &mut String, value: Option<impl std::fmt::Display>) -> bool {
    value.is_some_and(|v| write!(out, "{v}").is_ok())
}

fn boolean(out: &mut String, value: Option<bool>) -> bool {
    value.is_some_and(|v| {
        out.push_str(if v { "true" } else { "false" });
        true
    })
}

/// Appends argv joined by single spaces (an empty argv is an empty, present command line).
fn join_into(out: &mut String, argv: &[String]) -> bool {
    for (i, arg) in argv.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(arg);
    }
    true
}

fn exec(event: &Event) -> Option<&ExecEvent> {
    match &event.payload {
        Some(Payload::Exec(exec)) => Some(exec),
        _ => None,
    }
}

fn ancestor(event: &Event, n: usize) -> Option<&Ancestor> {
    exec(event).and_then(|e| e.ancestors.get(n))
}

fn container_id<'e>(event: &'e Event, process: Option<&'e Process>) -> Option<&'e str> {
    event
        .container
        .as_ref()
        .map(|c| c.id.as_str())
        .filter(|id| !id.is_empty())
        .or_else(|| process.map(|p| p.container_id.as_str()))
}

fn syscall(event: &Event) -> Option<&str> {
    match &event.payload {
        Some(Payload::File(f)) => Some(f.syscall.as_str()),
        Some(Payload::Credential(c)) => Some(c.syscall.as_str()),
        Some(Payload::Ptrace(p)) => Some(p.syscall.as_str()),
        Some(Payload::Signal(s)) => Some(s.syscall.as_str()),
        Some(Payload::Module(m)) => Some(m.syscall.as_str()),
        Some(Payload::Namespace(n)) => Some(n.syscall.as_str()),
        _ => None,
    }
}

fn result(event: &Event) -> Option<i64> {
    match &event.payload {
        Some(Payload::File(f)) => Some(f.result),
        Some(Payload::Network(n)) => Some(n.result),
        Some(Payload::Credential(c)) => Some(c.result),
        Some(Payload::Ptrace(p)) => Some(p.result),
        Some(Payload::Signal(s)) => Some(s.result),
        Some(Payload::Module(m)) => Some(m.result),
        Some(Payload::Bpf(b)) => Some(b.result),
        Some(Payload::Memfd(m)) => Some(m.result),
        Some(Payload::Namespace(n)) => Some(n.result),
        Some(Payload::IoUring(u)) => Some(u.result),
        Some(Payload::ProcessRename(r)) => Some(r.result),
        _ => None,
    }
}

fn file_field(field: Field, file: &FileEvent, out: &mut String) -> bool {
    use Field as F;
    let op = FileOp::try_from(file.op).unwrap_or(FileOp::Unspecified);
    // Rename and hard link name the new file in target_path; everything else in path.
    let new_file_is_target = matches!(op, FileOp::FileRename | FileOp::FileLink);
    let mode_applies = matches!(op, FileOp::FileChmod) || (op == FileOp::FileOpen && file.created);
    match field {
        F::TargetFilename if new_file_is_target => text(out, Some(file.target_path.as_str())),
        F::TargetFilename => text(out, Some(file.path.as_str())),
        F::SourceFilename if new_file_is_target => non_empty(out, Some(file.path.as_str())),
        F::SourceFilename => non_empty(out, Some(file.target_path.as_str())),
        F::FileOperation => text(out, Some(file_op_name(op))),
        F::FileMode => mode_applies && write!(out, "{:04o}", file.mode & 0o7777).is_ok(),
        F::FileModeFlags => {
            if !mode_applies {
                return false;
            }
            let mode = file.mode;
            let words = [
                (mode & 0o4000 != 0, "setuid"),
                (mode & 0o2000 != 0, "setgid"),
                (mode & 0o1000 != 0, "sticky"),
                (mode & 0o111 != 0, "executable"),
                (mode & 0o002 != 0, "world_writable"),
            ];
            push_words(out, words.iter().filter(|(on, _)| *on).map(|(_, w)| *w));
            true
        }
        F::FileCreated => boolean(out, Some(file.created)),
        F::FileTruncated => boolean(out, Some(file.truncated)),
        F::FileFlags => number(out, Some(file.flags)),
        F::OwnerUid => op == FileOp::FileChown && file.uid >= 0 && number(out, Some(file.uid)),
        F::OwnerGid => op == FileOp::FileChown && file.gid >= 0 && number(out, Some(file.gid)),
        F::FsType => non_empty(out, Some(file.fs_type.as_str())),
        _ => false,
    }
}

fn network_field(field: Field, net: &NetworkEvent, out: &mut String) -> bool {
    use Field as F;
    let op = NetworkOp::try_from(net.op).unwrap_or(NetworkOp::Unspecified);
    match field {
        F::Initiated => boolean(out, Some(net.initiated)),
        F::SourceIp => non_empty(out, Some(net.local_ip.as_str())),
        F::SourcePort => !net.local_ip.is_empty() && number(out, Some(net.local_port)),
        F::DestinationIp => non_empty(out, Some(net.remote_ip.as_str())),
        F::DestinationPort => !net.remote_ip.is_empty() && number(out, Some(net.remote_port)),
        F::Protocol => {
            match net.protocol {
                6 => out.push_str("tcp"),
                17 => out.push_str("udp"),
                n => {
                    let _ = write!(out, "{n}");
                }
            }
            true
        }
        F::SourceIsIpv6 => {
            !net.local_ip.is_empty() && boolean(out, Some(net.local_ip.contains(':')))
        }
        F::DestinationIsIpv6 => {
            !net.remote_ip.is_empty() && boolean(out, Some(net.remote_ip.contains(':')))
        }
        F::NetworkOperation => text(out, Some(network_op_name(op))),
        F::DestinationHostname => non_empty(out, Some(net.remote_hostname.as_str())),
        F::QueryName => non_empty(out, net.dns.as_ref().map(|d| d.query.as_str())),
        F::QueryResults => net.dns.as_ref().is_some_and(|d| {
            out.push_str(&d.answers.join(";"));
            true
        }),
        F::QueryStatus => number(out, net.dns.as_ref().map(|d| d.rcode)),
        _ => false,
    }
}

fn credential_field(field: Field, old: &Credentials, new: &Credentials, out: &mut String) -> bool {
    use Field as F;
    match field {
        F::OldUserId => number(out, Some(old.ruid)),
        F::NewUserId => number(out, Some(new.ruid)),
        F::OldEffectiveUserId => number(out, Some(old.euid)),
        F::NewEffectiveUserId => number(out, Some(new.euid)),
        F::OldGroupId => number(out, Some(old.rgid)),
        F::NewGroupId => number(out, Some(new.rgid)),
        F::NewCapabilities => {
            capability_names(out, new.cap_effective);
            true
        }
        F::CapabilitiesGained => {
            capability_names(out, new.cap_effective & !old.cap_effective);
            true
        }
        _ => false,
    }
}
