//! Reads of kernel structures at offsets the agent resolved from BTF, and the common header.

use aya_ebpf::helpers::{
    bpf_probe_read_kernel,
    generated::{bpf_get_current_cgroup_id, bpf_get_current_task, bpf_ktime_get_boot_ns},
};
use kestrel_ebpf_abi::{CredentialSet, DirectoryId, ProbeConfig, RecordHeader};

/// A kernel pointer, as an address.
pub type Ptr = u64;

/// Reads a `T` at `base + offset` in kernel memory.
#[inline(always)]
pub fn read_at<T>(base: Ptr, offset: u32) -> Result<T, i64> {
    read_addr(base + offset as u64)
}

/// Reads a `T` at `address` in kernel memory.
#[inline(always)]
pub fn read_addr<T>(address: u64) -> Result<T, i64> {
    unsafe { bpf_probe_read_kernel(address as *const T) }.map_err(|e| e as i64)
}

/// The task the program runs in.
#[inline(always)]
pub fn current_task() -> Ptr {
    unsafe { bpf_get_current_task() }
}

/// Process id of the task's parent (`task->real_parent->tgid`).
#[inline(always)]
pub fn parent_tgid(config: &ProbeConfig, task: Ptr) -> Result<u32, i64> {
    let parent: u64 = read_at(task, config.task_real_parent)?;
    read_at(parent, config.task_tgid)
}

/// The task's controlling terminal, encoded like `tty_nr` in `/proc/PID/stat`
/// (`MKDEV(driver->major, driver->minor_start + index)` in the kernel's new encoding); 0 when it
/// has none.
#[inline(always)]
pub fn controlling_tty(config: &ProbeConfig, task: Ptr) -> Result<u32, i64> {
    if config.task_signal == 0 {
        return Ok(0);
    }
    let signal: u64 = read_at(task, config.task_signal)?;
    if signal == 0 {
        return Ok(0);
    }
    let tty: u64 = read_at(signal, config.signal_tty)?;
    if tty == 0 {
        return Ok(0);
    }
    let driver: u64 = read_at(tty, config.tty_driver_index[0])?;
    let index: i32 = read_at(tty, config.tty_driver_index[1])?;
    let major: i32 = read_at(driver, config.driver_major_minor[0])?;
    let minor_start: i32 = read_at(driver, config.driver_major_minor[1])?;
    let major = major as u32 & 0xfff;
    let minor = minor_start.wrapping_add(index) as u32 & 0xf_ffff;
    Ok((minor & 0xff) | (major << 8) | ((minor & !0xff) << 12))
}

/// The header for a record of `kind` and `size` bytes about the current task.
#[inline(always)]
pub fn header(kind: u32, size: usize, pid: u32, tgid: u32) -> RecordHeader {
    RecordHeader {
        kind,
        size: size as u32,
        boot_ns: unsafe { bpf_ktime_get_boot_ns() },
        pid,
        tgid,
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
    }
}

/// The task's credentials: the ids and the three capability sets.
#[inline(always)]
pub fn credentials(config: &ProbeConfig, task: Ptr) -> Result<CredentialSet, i64> {
    let cred: u64 = read_at(task, config.task_cred)?;
    let mut ids = [0u32; 8];
    let mut i = 0;
    while i < 8 {
        ids[i] = read_at(cred, config.cred_ids[i])?;
        i += 1;
    }
    Ok(CredentialSet {
        ruid: ids[0],
        euid: ids[1],
        suid: ids[2],
        fsuid: ids[3],
        rgid: ids[4],
        egid: ids[5],
        sgid: ids[6],
        fsgid: ids[7],
        cap_effective: read_at(cred, config.cred_caps[0])?,
        cap_permitted: read_at(cred, config.cred_caps[1])?,
        cap_inheritable: read_at(cred, config.cred_caps[2])?,
    })
}

/// The `struct file *` open as `fd` in the task, if any.
#[inline(always)]
pub fn fd_file(config: &ProbeConfig, task: Ptr, fd: u64) -> Result<Ptr, i64> {
    let files: u64 = read_at(task, config.task_files)?;
    let fdt: u64 = read_at(files, config.files_fdt)?;
    let max_fds: u32 = read_at(fdt, config.fdt_max_fds)?;
    if fd >= max_fds as u64 {
        return Err(-9); // EBADF
    }
    let fds: u64 = read_at(fdt, config.fdt_fd)?;
    let file: u64 = read_addr(fds + fd * 8)?;
    if file == 0 {
        return Err(-9);
    }
    Ok(file)
}

/// The `struct sock *` behind descriptor `fd` of `task` (meaningful only when `fd` is a
/// socket; the callers check what they read from it).
#[inline(always)]
pub fn fd_sock(config: &ProbeConfig, task: Ptr, fd: u64) -> Result<Ptr, i64> {
    let file = fd_file(config, task, fd)?;
    let socket: u64 = read_at(file, config.file_private)?;
    read_at(socket, config.socket_sk)
}

/// The executable file of the task (`task->mm->exe_file`), 0 for kernel threads.
#[inline(always)]
pub fn exe_file(config: &ProbeConfig, task: Ptr) -> Result<Ptr, i64> {
    let mm: u64 = read_at(task, config.task_mm)?;
    if mm == 0 {
        return Ok(0);
    }
    read_at(mm, config.mm_exe_file)
}

/// `s_magic` of an overlay file system.
const OVERLAYFS_SUPER_MAGIC: u64 = 0x794c_7630;

/// The file is on an overlay file system and has an upper (writable layer) copy.
#[inline(always)]
pub fn in_upper_layer(config: &ProbeConfig, file: Ptr) -> Result<bool, i64> {
    let [vfs_inode, upper] = config.ovl_inode_upper;
    if upper == 0 {
        return Ok(false);
    }
    let inode: u64 = read_at(file, config.file_inode)?;
    let sb: u64 = read_at(inode, config.inode_sb)?;
    let magic: u64 = read_at(sb, config.sb_magic)?;
    if magic != OVERLAYFS_SUPER_MAGIC {
        return Ok(false);
    }
    // The overlay inode embeds the VFS inode: step back to the start of `struct ovl_inode`.
    let ovl_inode = inode - vfs_inode as u64;
    let upper_dentry: u64 = read_at(ovl_inode, upper)?;
    Ok(upper_dentry != 0)
}

/// The identity of a file's inode that stays unique when inode numbers are reused.
#[inline(always)]
pub fn inode_identity(config: &ProbeConfig, file: Ptr) -> Result<DirectoryId, i64> {
    let inode: u64 = read_at(file, config.file_inode)?;
    let ino: u64 = read_at(inode, config.inode_ino)?;
    let generation: u32 = read_at(inode, config.inode_generation)?;
    let sb: u64 = read_at(inode, config.inode_sb)?;
    let dev: u32 = read_at(sb, config.sb_dev)?;
    Ok(DirectoryId {
        generation_dev: (generation as u64) << 32 | dev as u64,
        inode: ino,
    })
}

/// (device, inode, link count) of a `struct file *`.
#[inline(always)]
pub fn file_identity(config: &ProbeConfig, file: Ptr) -> Result<(u64, u64, u32), i64> {
    let inode: u64 = read_at(file, config.file_inode)?;
    let ino: u64 = read_at(inode, config.inode_ino)?;
    let nlink: u32 = read_at(inode, config.inode_nlink)?;
    let sb: u64 = read_at(inode, config.inode_sb)?;
    let dev: u32 = read_at(sb, config.sb_dev)?;
    Ok((dev as u64, ino, nlink))
}
