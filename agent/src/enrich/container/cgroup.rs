//! Which container a process belongs to, from its cgroup v2 path.
//!
//! Every common runtime puts a container's processes in a cgroup whose directory name carries
//! the full container id. The layouts, innermost component last:
//!
//! | runtime                 | systemd cgroup driver                         | cgroupfs driver                   |
//! |-------------------------|-----------------------------------------------|-----------------------------------|
//! | docker                  | `/system.slice/docker-<id>.scope`             | `/docker/<id>`                    |
//! | podman                  | `/machine.slice/libpod-<id>.scope[/container]`| `/libpod_parent/libpod-<id>`      |
//! | containerd (Kubernetes) | `/kubepods.slice/…/cri-containerd-<id>.scope` | `/kubepods/burstable/pod<uid>/<id>` |
//! | cri-o (Kubernetes)      | `/kubepods.slice/…/crio-<id>.scope`           | `/kubepods/burstable/pod<uid>/crio-<id>` |
//!
//! Monitors (`libpod-conmon-<id>.scope`, `crio-conmon-<id>.scope`) are not the container: they
//! are skipped and the search goes on towards the root, so a monitor inside an outer container
//! belongs to that outer container. The search runs from the innermost component outwards, so
//! nested layouts (Kubernetes in Docker, a `kubelet.slice` cgroup root) resolve to the
//! innermost container.
//!
//! [`CgroupFs`] turns the cgroup id that the kernel stamps on every event (the inode number of
//! the cgroup's directory on cgroup v2) into that path.

use std::{
    collections::HashMap,
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

/// Deepest cgroup directory [`CgroupFs::find_path`] descends into. Kubernetes layouts are at
/// most about seven levels deep; nested runtimes add a few.
pub const MAX_CGROUP_DEPTH: usize = 16;

/// The container runtime a cgroup path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Runtime {
    /// Docker (moby).
    Docker,
    /// containerd, normally through its CRI plugin for Kubernetes.
    Containerd,
    /// CRI-O.
    CriO,
    /// Podman (libpod).
    Podman,
    /// A container whose path does not name its runtime (Kubernetes with the cgroupfs driver and
    /// containerd, or a bare container id): the runtime that knows the id decides.
    Unknown,
}

impl Runtime {
    /// The name used in [`kestrel_proto::Container::runtime`]: `docker`, `containerd`, `cri-o`,
    /// `podman`, or the empty string when unknown.
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Podman => "podman",
            Runtime::Unknown => "",
        }
    }
}

/// A container as its cgroup path identifies it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerRef {
    /// Runtime named by the path.
    pub runtime: Runtime,
    /// Full container id, 64 lowercase hex digits.
    pub id: String,
    /// Kubernetes pod uid when the path has a pod component (`pod<uid>`, `…-pod<uid>.slice`).
    pub pod_uid: Option<String>,
}

/// Directory-name prefixes of cgroups that belong to a container monitor, not a container.
const MONITOR_PREFIXES: [&str; 2] = ["libpod-conmon-", "crio-conmon-"];

/// Directory-name prefixes that name a container's runtime, most specific first
/// (`cri-containerd-` before anything that could match its tail).
const RUNTIME_PREFIXES: [(&str, Runtime); 4] = [
    ("cri-containerd-", Runtime::Containerd),
    ("crio-", Runtime::CriO),
    ("docker-", Runtime::Docker),
    ("libpod-", Runtime::Podman),
];

/// The container a cgroup v2 path (as in the `0::` line of `/proc/<pid>/cgroup`) belongs to, or
/// `None` for a host cgroup.
pub fn parse_cgroup_path(path: &str) -> Option<ContainerRef> {
    let components: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != "." && *c != "..")
        .collect();
    for index in (0..components.len()).rev() {
        let parent = index.checked_sub(1).map(|i| components[i]);
        if let Some((runtime, id)) = container_component(components[index], parent) {
            return Some(ContainerRef {
                runtime,
                id: id.to_owned(),
                pod_uid: components[..index].iter().rev().find_map(|c| pod_uid(c)),
            });
        }
    }
    None
}

/// The runtime and id that one path component names, if it is a container's cgroup.
fn container_component<'a>(component: &'a str, parent: Option<&str>) -> Option<(Runtime, &'a str)> {
    let name = component.strip_suffix(".scope").unwrap_or(component);
    if MONITOR_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return None;
    }
    for (prefix, runtime) in RUNTIME_PREFIXES {
        if let Some(id) = name.strip_prefix(prefix) {
            return is_container_id(id).then_some((runtime, id));
        }
    }
    if is_container_id(name) {
        let runtime = match parent {
            Some("docker") => Runtime::Docker,
            _ => Runtime::Unknown,
        };
        return Some((runtime, name));
    }
    None
}

/// True for 64 lowercase hex digits, the id form of docker, containerd, cri-o and podman.
pub fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The Kubernetes pod uid in a pod cgroup's name: `pod<uid>` (cgroupfs driver) or
/// `kubepods-<qos>-pod<uid_with_underscores>.slice` (systemd driver, which escapes `-` as `_`).
fn pod_uid(component: &str) -> Option<String> {
    let rest = match component.strip_suffix(".slice") {
        Some(slice) => slice.rsplit_once("-pod").map(|(_, uid)| uid)?,
        None => component.strip_prefix("pod")?,
    };
    let uid = rest.replace('_', "-");
    let well_formed = matches!(uid.len(), 32 | 36)
        && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
        && uid.bytes().any(|b| b.is_ascii_hexdigit());
    well_formed.then_some(uid)
}

/// Errors locating or reading cgroups.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// `/proc/self/mountinfo` lists no cgroup2 file system.
    #[error("no cgroup2 file system in {mountinfo}: cgroup v2 (unified or hybrid) is required")]
    NoCgroup2 {
        /// The mount table read.
        mountinfo: PathBuf,
    },
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `/proc/<pid>/cgroup` has no cgroup v2 (`0::`) line.
    #[error("{path} has no cgroup v2 line (0::…)")]
    NoV2Line {
        /// The file.
        path: PathBuf,
    },
}

/// The cgroup v2 hierarchy of this host: where it is mounted, how to find a process's cgroup
/// and how to turn a cgroup id into a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupFs {
    root: PathBuf,
    proc: PathBuf,
}

impl CgroupFs {
    /// Finds the cgroup2 mount in `/proc/self/mountinfo`: `/sys/fs/cgroup` on a unified host,
    /// `/sys/fs/cgroup/unified` on a hybrid one. The first cgroup2 mount wins.
    pub fn discover() -> Result<Self, CgroupError> {
        let mountinfo = PathBuf::from("/proc/self/mountinfo");
        let text = fs::read_to_string(&mountinfo).map_err(|source| CgroupError::Read {
            path: mountinfo.clone(),
            source,
        })?;
        let root = cgroup2_mount_point(&text).ok_or(CgroupError::NoCgroup2 { mountinfo })?;
        Ok(Self::at(root))
    }

    /// The hierarchy mounted at `root`, with processes under `/proc`.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            proc: PathBuf::from("/proc"),
        }
    }

    /// Reads processes under `proc` instead of `/proc` (a host `/proc` mounted elsewhere).
    pub fn with_proc(mut self, proc: impl Into<PathBuf>) -> Self {
        self.proc = proc.into();
        self
    }

    /// Where the hierarchy is mounted.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The cgroup v2 path of process `pid`, from `/proc/<pid>/cgroup`, e.g.
    /// `/libpod_parent/libpod-<id>`. Relative to this process's cgroup namespace.
    pub fn path_of_pid(&self, pid: u32) -> Result<String, CgroupError> {
        let path = self.proc.join(pid.to_string()).join("cgroup");
        let text = fs::read_to_string(&path).map_err(|source| CgroupError::Read {
            path: path.clone(),
            source,
        })?;
        text.lines()
            .find_map(|line| line.strip_prefix("0::"))
            .map(str::to_owned)
            .ok_or(CgroupError::NoV2Line { path })
    }

    /// The id of the cgroup at `path` (relative to the hierarchy root): the inode number of its
    /// directory, which is what `bpf_get_current_cgroup_id` returns on 64-bit kernels.
    pub fn id_of_path(&self, path: &str) -> Result<u64, CgroupError> {
        let dir = self.root.join(path.trim_start_matches('/'));
        fs::metadata(&dir)
            .map(|m| m.ino())
            .map_err(|source| CgroupError::Read { path: dir, source })
    }

    /// The cgroup path of process `pid` if that process is still in cgroup `cgroup_id`; `None`
    /// when it has exited or moved (then [`CgroupFs::find_path`] finds the path by id).
    pub fn path_of_pid_in(&self, pid: u32, cgroup_id: u64) -> Option<String> {
        let path = self.path_of_pid(pid).ok()?;
        (self.id_of_path(&path).ok()? == cgroup_id).then_some(path)
    }

    /// The path of cgroup `cgroup_id`, found by walking the hierarchy (at most
    /// [`MAX_CGROUP_DEPTH`] levels) for the directory with that inode number. `None` when no
    /// such cgroup exists (any more). This reads cgroup directories until it finds the id: run
    /// it off the event path.
    pub fn find_path(&self, cgroup_id: u64) -> Option<String> {
        let mut found = None;
        self.walk(|id, path| {
            if id == cgroup_id {
                found = Some(path);
                false
            } else {
                true
            }
        });
        found
    }

    /// Every cgroup in the hierarchy (at most [`MAX_CGROUP_DEPTH`] levels deep) by id. This
    /// reads every cgroup directory: run it off the event path.
    pub fn index(&self) -> HashMap<u64, String> {
        let mut index = HashMap::new();
        self.walk(|id, path| {
            index.insert(id, path);
            true
        });
        index
    }

    /// Calls `visit(id, path)` for the root and every cgroup below it until `visit` returns
    /// false. Directories that vanish or cannot be read during the walk are skipped.
    fn walk(&self, mut visit: impl FnMut(u64, String) -> bool) {
        let Ok(root) = fs::metadata(&self.root) else {
            return;
        };
        if !visit(root.ino(), "/".to_owned()) {
            return;
        }
        let mut stack = vec![(self.root.clone(), 0usize)];
        while let Some((dir, depth)) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let Ok(meta) = entry.metadata() else {
                    continue;
                };
                let path = entry.path();
                let Ok(relative) = path.strip_prefix(&self.root) else {
                    continue;
                };
                if !visit(meta.ino(), format!("/{}", relative.display())) {
                    return;
                }
                if depth + 1 < MAX_CGROUP_DEPTH {
                    stack.push((path, depth + 1));
                }
            }
        }
    }
}

/// The mount point of the first cgroup2 file system in a `/proc/<pid>/mountinfo` text.
fn cgroup2_mount_point(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // `id parent major:minor root mount-point options [optional…] - fstype source super`
        let (before, after) = line.split_once(" - ")?;
        let fstype = after.split_whitespace().next()?;
        let mount_point = before.split_whitespace().nth(4)?;
        (fstype == "cgroup2").then(|| PathBuf::from(unescape_mount_point(mount_point)))
    })
}

/// Undoes the octal escapes (`\040` for a space) that mountinfo uses in paths.
fn unescape_mount_point(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|digits| bytes[i] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        match octal {
            Some(digits) => {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                out.push(value as u8);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "cd78013b81ff3e3e3396d97ac91c7f0c363ef9388a32eafb1f7873654248f0ec";
    const UID: &str = "3c1a4e7f-0c1d-4a5b-9f7e-2b1c3d4e5f60";

    fn parsed(path: &str) -> Option<(Runtime, String, Option<String>)> {
        parse_cgroup_path(path).map(|c| (c.runtime, c.id, c.pod_uid))
    }

    #[test]
    fn docker_systemd_and_cgroupfs_layouts_name_docker() {
        for path in [
            format!("/system.slice/docker-{ID}.scope"),
            format!("/docker/{ID}"),
        ] {
            assert_eq!(
                parsed(&path),
                Some((Runtime::Docker, ID.into(), None)),
                "{path}"
            );
        }
    }

    #[test]
    fn podman_layouts_name_podman_including_the_container_subcgroup() {
        for path in [
            format!("/libpod_parent/libpod-{ID}"),
            format!("/machine.slice/libpod-{ID}.scope"),
            format!("/machine.slice/libpod-{ID}.scope/container"),
            format!("/machine.slice/machine-libpod_pod_0123abcd.slice/libpod-{ID}.scope"),
            format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"),
        ] {
            assert_eq!(
                parsed(&path),
                Some((Runtime::Podman, ID.into(), None)),
                "{path}"
            );
        }
    }

    #[test]
    fn podman_and_crio_monitors_are_not_containers() {
        for path in [
            format!("/machine.slice/libpod-conmon-{ID}.scope"),
            "/libpod_parent/conmon".to_owned(),
            format!("/kubepods.slice/kubepods-besteffort.slice/crio-conmon-{ID}.scope"),
        ] {
            assert_eq!(parsed(&path), None, "{path}");
        }
    }

    #[test]
    fn a_monitor_inside_an_outer_container_belongs_to_the_outer_container() {
        let outer = "a".repeat(64);
        let path = format!("/docker/{outer}/machine.slice/libpod-conmon-{ID}.scope");
        assert_eq!(parsed(&path), Some((Runtime::Docker, outer, None)));
    }

    #[test]
    fn kubernetes_systemd_layouts_name_the_runtime_and_the_pod_uid() {
        let escaped = UID.replace('-', "_");
        let cases = [
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{escaped}.slice/cri-containerd-{ID}.scope"
                ),
                Runtime::Containerd,
            ),
            (
                format!("/kubepods.slice/kubepods-pod{escaped}.slice/cri-containerd-{ID}.scope"),
                Runtime::Containerd,
            ),
            (
                format!(
                    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{escaped}.slice/crio-{ID}.scope"
                ),
                Runtime::CriO,
            ),
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{escaped}.slice/docker-{ID}.scope"
                ),
                Runtime::Docker,
            ),
        ];
        for (path, runtime) in cases {
            assert_eq!(
                parsed(&path),
                Some((runtime, ID.into(), Some(UID.into()))),
                "{path}"
            );
        }
    }

    #[test]
    fn kubernetes_cgroupfs_layouts_leave_the_runtime_to_the_api_that_knows_the_id() {
        for path in [
            format!("/kubepods/burstable/pod{UID}/{ID}"),
            format!("/kubepods/pod{UID}/{ID}"),
            format!("/kubepods/besteffort/pod{UID}/{ID}"),
        ] {
            assert_eq!(
                parsed(&path),
                Some((Runtime::Unknown, ID.into(), Some(UID.into()))),
                "{path}"
            );
        }
        assert_eq!(
            parsed(&format!("/kubepods/burstable/pod{UID}/crio-{ID}")),
            Some((Runtime::CriO, ID.into(), Some(UID.into())))
        );
    }

    #[test]
    fn nested_kubernetes_in_docker_resolves_to_the_innermost_container() {
        let node = "b".repeat(64);
        let escaped = UID.replace('-', "_");
        let path = format!(
            "/docker/{node}/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{escaped}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(
            parsed(&path),
            Some((Runtime::Containerd, ID.into(), Some(UID.into())))
        );
    }

    #[test]
    fn static_pod_uids_without_dashes_are_recognised() {
        let uid = "0123456789abcdef0123456789abcdef";
        let path = format!("/kubepods/burstable/pod{uid}/{ID}");
        assert_eq!(parsed(&path).and_then(|p| p.2), Some(uid.to_owned()));
    }

    #[test]
    fn host_cgroups_are_not_containers() {
        for path in [
            "/",
            "",
            "/init.scope",
            "/system.slice/sshd.service",
            "/system.slice/docker.service",
            "/system.slice/containerd.service",
            "/user.slice/user-1000.slice/session-3.scope",
            "/kubepods.slice/kubepods-burstable.slice",
            "/process_api/2934595bfacf819f4bc879298ad5c110",
        ] {
            assert_eq!(parsed(path), None, "{path}");
        }
    }

    #[test]
    fn ids_that_are_not_64_lowercase_hex_digits_are_not_containers() {
        let upper = ID.to_uppercase();
        let short = &ID[..12];
        for path in [
            format!("/docker/{upper}"),
            format!("/system.slice/docker-{short}.scope"),
            format!("/machine.slice/libpod-{ID}x.scope"),
        ] {
            assert_eq!(parsed(&path), None, "{path}");
        }
    }

    #[test]
    fn cgroup_namespace_relative_paths_still_parse() {
        let path = format!("/../../kubepods/burstable/pod{UID}/{ID}");
        assert_eq!(
            parsed(&path),
            Some((Runtime::Unknown, ID.into(), Some(UID.into())))
        );
    }

    #[test]
    fn cgroup2_mount_is_found_on_unified_and_hybrid_hosts() {
        let hybrid = "\
35 24 0:30 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
36 35 0:31 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
37 35 0:32 / /sys/fs/cgroup/memory rw,relatime shared:11 - cgroup cgroup rw,memory
";
        assert_eq!(
            cgroup2_mount_point(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified = "29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount_point(unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        let escaped = "29 23 0:26 / /host\\040root/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount_point(escaped),
            Some(PathBuf::from("/host root/cgroup"))
        );
        assert_eq!(
            cgroup2_mount_point("1 0 0:1 / / rw - ext4 /dev/vda rw\n"),
            None
        );
    }

    #[test]
    fn this_process_cgroup_path_maps_back_to_its_id_and_the_walk_finds_it() {
        let Ok(fs) = CgroupFs::discover() else {
            eprintln!("SKIPPED: no cgroup2 mount on this host");
            return;
        };
        let pid = std::process::id();
        let path = fs.path_of_pid(pid).expect("own cgroup path");
        let id = fs.id_of_path(&path).expect("own cgroup id");
        assert_eq!(fs.path_of_pid_in(pid, id), Some(path.clone()));
        assert_eq!(fs.path_of_pid_in(pid, id + 1), None);
        assert_eq!(fs.find_path(id), Some(path.clone()));
        assert_eq!(fs.index().get(&id), Some(&path));
    }

    #[test]
    fn a_missing_process_names_its_proc_file_in_the_error() {
        let fs = CgroupFs::at("/nonexistent").with_proc("/nonexistent-proc");
        let err = fs.path_of_pid(42).unwrap_err().to_string();
        assert!(err.contains("/nonexistent-proc/42/cgroup"), "{err}");
    }
}
