//! Kernel layout facts resolved at load time: struct field offsets from the running kernel's
//! BTF (`/sys/kernel/btf/vmlinux`) and tracepoint record field offsets from tracefs. Rust eBPF
//! has no CO-RE relocations, so the programs read these offsets from [`ProbeConfig`].

use std::path::{Path, PathBuf};

use btf_rs::{Backend, Btf, BtfType, Type};
use kestrel_ebpf_abi::ProbeConfig;

/// Where the running kernel publishes its BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";
/// Where tracefs is normally mounted.
pub const TRACEFS: &str = "/sys/kernel/tracing";

/// A layout fact that could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// The BTF file is missing or unparsable.
    #[error("kernel BTF {path}: {reason}")]
    Btf { path: PathBuf, reason: String },
    /// A struct or one of its fields is not in the kernel's BTF.
    #[error("kernel BTF: no field {field} in struct {strukt}")]
    MissingField { strukt: String, field: String },
    /// A tracepoint format file is missing or lacks a field.
    #[error("tracepoint format {path}: {reason}")]
    Tracepoint { path: PathBuf, reason: String },
}

/// Resolves everything the programs need about this kernel.
pub fn probe_config(btf_path: &Path, tracefs: &Path) -> Result<ProbeConfig, LayoutError> {
    // Mapped rather than parsed whole: the parsed form of the kernel's ~130,000 types was the
    // largest part of the agent's start-up peak. Kernels before 6.16 cannot map the file.
    let btf = Btf::from_file_with_backend(btf_path, Backend::Mmap)
        .or_else(|_| Btf::from_file(btf_path))
        .map_err(|e| LayoutError::Btf {
            path: btf_path.to_owned(),
            reason: e.to_string(),
        })?;
    let off = |strukt: &str, field: &str| field_offset(&btf, strukt, field);
    let task = |field| off("task_struct", field);
    let cred = |field| off("cred", field);
    let skc = |field| off("sock_common", field);
    let tracepoint =
        |category, name, field| tracepoint_field_offset(tracefs, category, name, field);
    // A kernel built without terminals has no tty structs: events then name no terminal.
    let terminal = (|| {
        Ok::<_, LayoutError>((
            task("signal")?,
            off("signal_struct", "tty")?,
            [off("tty_struct", "driver")?, off("tty_struct", "index")?],
            [
                off("tty_driver", "major")?,
                off("tty_driver", "minor_start")?,
            ],
        ))
    })()
    .unwrap_or_default();
    // Overlay may be compiled out, or a module without BTF here: then no exec is flagged as
    // coming from a container's writable layer.
    let overlay = (|| {
        Ok::<_, LayoutError>([
            off("ovl_inode", "vfs_inode")?,
            off("ovl_inode", "__upperdentry")?,
        ])
    })()
    .unwrap_or_default();
    Ok(ProbeConfig {
        task_real_parent: task("real_parent")?,
        task_tgid: task("tgid")?,
        task_pid: task("pid")?,
        task_mm: task("mm")?,
        task_exit_code: task("exit_code")?,
        mm_arg_start: off("mm_struct", "arg_start")?,
        mm_arg_end: off("mm_struct", "arg_end")?,
        tp_exec_filename: tracepoint("sched", "sched_process_exec", "filename")?,
        tp_exit_group_dead: tracepoint("sched", "sched_process_exit", "group_dead")?,
        agent_tgid: 0,
        only_tgid: 0,
        kinds_enabled: 0,
        task_cred: task("cred")?,
        task_fs: task("fs")?,
        task_files: task("files")?,
        cred_ids: [
            cred("uid")?,
            cred("euid")?,
            cred("suid")?,
            cred("fsuid")?,
            cred("gid")?,
            cred("egid")?,
            cred("sgid")?,
            cred("fsgid")?,
        ],
        cred_caps: [
            cred("cap_effective")?,
            cred("cap_permitted")?,
            cred("cap_inheritable")?,
        ],
        fs_pwd: off("fs_struct", "pwd")?,
        path_mnt: off("path", "mnt")?,
        path_dentry: off("path", "dentry")?,
        dentry_parent: off("dentry", "d_parent")?,
        dentry_name: off("dentry", "d_name")? + off("qstr", "name")?,
        vfsmount_root: off("vfsmount", "mnt_root")?,
        mount_mnt: off("mount", "mnt")?,
        mount_parent: off("mount", "mnt_parent")?,
        mount_mountpoint: off("mount", "mnt_mountpoint")?,
        files_fdt: off("files_struct", "fdt")?,
        fdt_max_fds: off("fdtable", "max_fds")?,
        fdt_fd: off("fdtable", "fd")?,
        file_path: off("file", "f_path")?,
        file_inode: off("file", "f_inode")?,
        file_private: off("file", "private_data")?,
        inode_ino: off("inode", "i_ino")?,
        inode_sb: off("inode", "i_sb")?,
        inode_nlink: off("inode", "__i_nlink")?,
        sb_dev: off("super_block", "s_dev")?,
        mm_exe_file: off("mm_struct", "exe_file")?,
        socket_sk: off("socket", "sk")?,
        skc: [
            skc("skc_daddr")?,
            skc("skc_rcv_saddr")?,
            skc("skc_dport")?,
            skc("skc_num")?,
            skc("skc_family")?,
            skc("skc_v6_daddr")?,
            skc("skc_v6_rcv_saddr")?,
        ],
        sk_protocol: off("sock", "sk_protocol")?,
        sk_type: off("sock", "sk_type")?,
        // io_uring may be compiled out: then its hooks are reported unavailable.
        tp_uring_opcode: tracepoint("io_uring", "io_uring_submit_req", "opcode").unwrap_or(0),
        sensitive_count: 0,
        muted_count: 0,
        muted_exe_count: 0,
        sensitive_name_count: 0,
        task_signal: terminal.0,
        signal_tty: terminal.1,
        tty_driver_index: terminal.2,
        driver_major_minor: terminal.3,
        sb_magic: off("super_block", "s_magic")?,
        ovl_inode_upper: overlay,
        inode_generation: off("inode", "i_generation")?,
        // Only with CONFIG_AUDIT (`loginuid` is a `kuid_t`: its `val` is at offset 0).
        task_login: match (task("loginuid"), task("sessionid")) {
            (Ok(loginuid), Ok(sessionid)) => [loginuid, sessionid],
            _ => [0, 0],
        },
        ring_wakeup_bytes: 0,
    })
}

/// Byte offset of `field` in `struct strukt`, looking through anonymous struct and union members
/// (the kernel nests many fields in them, e.g. `mm_struct.arg_start`).
pub fn field_offset(btf: &Btf, strukt: &str, field: &str) -> Result<u32, LayoutError> {
    let missing = || LayoutError::MissingField {
        strukt: strukt.to_owned(),
        field: field.to_owned(),
    };
    let types = btf.resolve_types_by_name(strukt).map_err(|_| missing())?;
    types
        .iter()
        .filter_map(|t| match t {
            Type::Struct(s) => find_member_bits(btf, s, field),
            _ => None,
        })
        .next()
        .map(|bits| bits / 8)
        .ok_or_else(missing)
}

/// Bit offset of `field` within `s`, recursing into anonymous members.
fn find_member_bits(btf: &Btf, s: &btf_rs::Struct, field: &str) -> Option<u32> {
    for member in &s.members {
        let name = btf.resolve_name(member).unwrap_or_default();
        if name == field {
            return Some(member.bit_offset());
        }
        if name.is_empty() {
            if let Ok(Type::Struct(inner) | Type::Union(inner)) =
                resolve_through_modifiers(btf, member)
            {
                if let Some(bits) = find_member_bits(btf, &inner, field) {
                    return Some(member.bit_offset() + bits);
                }
            }
        }
    }
    None
}

/// The type of `member`, skipping typedefs and qualifiers.
fn resolve_through_modifiers(btf: &Btf, member: &dyn BtfType) -> Result<Type, btf_rs::Error> {
    let mut t = btf.resolve_chained_type(member)?;
    for _ in 0..16 {
        match &t {
            Type::Typedef(_)
            | Type::Volatile(_)
            | Type::Const(_)
            | Type::Restrict(_)
            | Type::TypeTag(_) => {
                t = btf.resolve_chained_type(t.as_btf_type().expect("modifier has a type"))?;
            }
            _ => break,
        }
    }
    Ok(t)
}

/// Offset of `field` in the record of tracepoint `category/name`, from its tracefs format file.
pub fn tracepoint_field_offset(
    tracefs: &Path,
    category: &str,
    name: &str,
    field: &str,
) -> Result<u32, LayoutError> {
    let path = tracefs
        .join("events")
        .join(category)
        .join(name)
        .join("format");
    let text = std::fs::read_to_string(&path).map_err(|e| LayoutError::Tracepoint {
        path: path.clone(),
        reason: format!("{e} (is tracefs mounted at {}?)", tracefs.display()),
    })?;
    parse_format_offset(&text, field).ok_or_else(|| LayoutError::Tracepoint {
        path,
        reason: format!("no field {field}"),
    })
}

/// Finds `offset:N` on the format line declaring `field`
/// (`field:__data_loc char[] filename; offset:8; size:4; signed:0;`, tab-separated).
fn parse_format_offset(format: &str, field: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        let decl = line.trim().strip_prefix("field:")?;
        let (declaration, rest) = decl.split_once(';')?;
        let declared_name = declaration.split_whitespace().last()?;
        let declared_name = declared_name.split('[').next()?;
        if declared_name != field {
            return None;
        }
        let offset = rest
            .split(';')
            .find_map(|part| part.trim().strip_prefix("offset:"))?;
        offset.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXIT_FORMAT: &str = "name: sched_process_exit\nID: 369\nformat:\n\
        \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
        \tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\
        \tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;\n\
        \tfield:bool group_dead;\toffset:32;\tsize:1;\tsigned:0;\n";

    #[test]
    fn format_offsets_are_read_by_field_name() {
        assert_eq!(parse_format_offset(EXIT_FORMAT, "group_dead"), Some(32));
        assert_eq!(parse_format_offset(EXIT_FORMAT, "comm"), Some(8));
        assert_eq!(parse_format_offset(EXIT_FORMAT, "pid"), Some(24));
        assert_eq!(parse_format_offset(EXIT_FORMAT, "prio"), None);
    }

    #[test]
    fn running_kernel_layout_resolves_when_btf_is_present() {
        if !Path::new(VMLINUX_BTF).exists() {
            assert!(
                std::env::var("CI").is_err(),
                "CI=true but {VMLINUX_BTF} is missing"
            );
            eprintln!("skipping: no {VMLINUX_BTF}");
            return;
        }
        let btf = Btf::from_file(VMLINUX_BTF).unwrap();
        let arg_start = field_offset(&btf, "mm_struct", "arg_start").unwrap();
        let arg_end = field_offset(&btf, "mm_struct", "arg_end").unwrap();
        assert_eq!(arg_end, arg_start + 8, "arg_end follows arg_start");
        let pid = field_offset(&btf, "task_struct", "pid").unwrap();
        let tgid = field_offset(&btf, "task_struct", "tgid").unwrap();
        assert_eq!(tgid, pid + 4, "tgid follows pid");
        assert!(field_offset(&btf, "task_struct", "no_such_field").is_err());
        // The terminal's offsets (0 would mean "no terminals" to the programs).
        assert!(field_offset(&btf, "task_struct", "signal").unwrap() > 0);
        assert!(field_offset(&btf, "signal_struct", "tty").unwrap() > 0);
    }
}
