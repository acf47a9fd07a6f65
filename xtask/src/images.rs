//! `cargo xtask images`: builds the `kestrel-agent` and `kestrel-collector` container images
//! with Podman from `deploy/images/*.Containerfile`, `FROM scratch`: each build context holds a
//! root file system with the binary and the shared libraries `ldd` lists for it (copied from
//! this host), so no base image is pulled from a registry.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};

use crate::util;

/// The images' tag: the workspace version, as the Helm chart's appVersion.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The static busybox the collector image carries (Debian `busybox-static`).
const BUSYBOX: &str = "/bin/busybox";
/// The collector image's user and group.
const COLLECTOR_UID: u32 = 65532;

/// One image.
struct Image {
    /// `agent` or `collector`: the Containerfile is `deploy/images/<name>.Containerfile`.
    name: &'static str,
    /// The binary, installed as `/usr/bin/<binary>`; also the image name.
    binary: &'static str,
}

const IMAGES: [Image; 2] = [
    Image {
        name: "agent",
        binary: "kestrel-agent",
    },
    Image {
        name: "collector",
        binary: "kestrel-collector",
    },
];

/// Builds both images from the binaries of `profile` (`release` or `debug`), building those
/// first unless `build` is false. Prints each image's name and size.
pub fn images(profile: &str, build: bool) -> Result<()> {
    let root = util::workspace_root();
    if build {
        util::build_binaries("images", profile)?;
    }
    if !util::on_path("podman") {
        bail!("images: podman not found; `cargo xtask setup` installs it (Debian podman)");
    }
    let target = root.join("target").join(profile);
    for image in &IMAGES {
        let binary = target.join(image.binary);
        if !binary.is_file() {
            bail!(
                "images: {} not built; run `cargo build --bins{}`",
                binary.display(),
                if profile == "release" {
                    " --release"
                } else {
                    ""
                }
            );
        }
        let context = root.join("target/images").join(image.name);
        prepare_context(&root, image, &binary, &context)?;
        let tag = format!("{}:{VERSION}", image.binary);
        let containerfile = root.join(format!("deploy/images/{}.Containerfile", image.name));
        let mut podman = Command::new("podman");
        podman
            .args(["build", "--quiet", "--file"])
            .arg(&containerfile)
            .args(["--build-arg", &format!("VERSION={VERSION}"), "--tag", &tag])
            .arg(&context);
        util::run("images", &mut podman)?;
        let size = util::capture(Command::new("podman").args([
            "image",
            "inspect",
            "--format",
            "{{.Size}}",
            &tag,
        ]))?;
        let bytes: u64 = String::from_utf8_lossy(&size.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        println!(
            "images: built localhost/{tag} ({:.1} MiB)",
            bytes as f64 / (1024.0 * 1024.0)
        );
    }
    Ok(())
}

/// Lays out `context/rootfs` for `image`: the binary, its libraries and the image's extras.
fn prepare_context(root: &Path, image: &Image, binary: &Path, context: &Path) -> Result<()> {
    if context.exists() {
        fs::remove_dir_all(context).with_context(|| format!("removing {}", context.display()))?;
    }
    let rootfs = context.join("rootfs");
    let installed = rootfs.join("usr/bin").join(image.binary);
    copy_file(binary, &installed, 0o755)?;
    // Debug information is most of a binary's size; symbols stay for backtraces.
    if util::on_path("strip") {
        util::run(
            "images",
            Command::new("strip").arg("--strip-debug").arg(&installed),
        )?;
    } else {
        println!(
            "images: note: strip (binutils) not found; the binaries keep their debug information"
        );
    }
    for library in shared_libraries(binary)? {
        let inside = rootfs.join(library.strip_prefix("/").unwrap_or(&library));
        copy_file(&library, &inside, 0o755)?;
    }
    let tmp = rootfs.join("tmp");
    fs::create_dir_all(&tmp)?;
    set_mode(&tmp, 0o1777)?;
    let (user, home) = match image.name {
        "collector" => ("kestrel", "/var/lib/kestrel"),
        _ => ("root", "/"),
    };
    let uid = if user == "root" { 0 } else { COLLECTOR_UID };
    let etc = rootfs.join("etc");
    fs::create_dir_all(&etc)?;
    let mut passwd = String::from("root:x:0:0:root:/:/sbin/nologin\n");
    let mut group = String::from("root:x:0:\n");
    if uid != 0 {
        passwd.push_str(&format!(
            "{user}:x:{uid}:{uid}:Kestrel collector:{home}:/sbin/nologin\n"
        ));
        group.push_str(&format!("{user}:x:{uid}:\n"));
    }
    fs::write(etc.join("passwd"), passwd)?;
    fs::write(etc.join("group"), group)?;
    if image.name == "collector" {
        if !is_static(Path::new(BUSYBOX)) {
            bail!(
                "images: {BUSYBOX} is missing or not static; install the Debian package \
                 busybox-static (`cargo xtask setup` does)"
            );
        }
        copy_file(Path::new(BUSYBOX), &rootfs.join("bin/busybox"), 0o755)?;
        copy_tree(
            &root.join("collector/rules"),
            &rootfs.join("usr/share/kestrel/rules"),
        )?;
        let data = rootfs.join("var/lib/kestrel");
        fs::create_dir_all(&data)?;
        set_mode(&data, 0o700)?;
        nix::unistd::chown(
            &data,
            Some(nix::unistd::Uid::from_raw(COLLECTOR_UID)),
            Some(nix::unistd::Gid::from_raw(COLLECTOR_UID)),
        )
        .with_context(|| format!("chown {} (run as root)", data.display()))?;
    }
    Ok(())
}

/// The shared libraries (and the dynamic loader) `ldd` reports for `binary`, by absolute path.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let output = util::capture(Command::new("ldd").arg(binary))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        if text.contains("not a dynamic executable") {
            return Ok(Vec::new());
        }
        bail!(
            "images: ldd {} failed: {}",
            binary.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let libraries = parse_ldd(&text);
    if let Some(missing) = text.lines().find(|line| line.contains("not found")) {
        bail!(
            "images: {} needs a missing library: {missing}",
            binary.display()
        );
    }
    Ok(libraries)
}

/// The absolute paths in `ldd` output (`libc.so.6 => /lib/…/libc.so.6 (0x…)`,
/// `/lib64/ld-linux-x86-64.so.2 (0x…)`); the vDSO has none.
fn parse_ldd(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next(),
                None => line.split_whitespace().next(),
            }?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// Whether `path` is a statically linked executable.
fn is_static(path: &Path) -> bool {
    path.is_file()
        && util::capture(Command::new("ldd").arg(path)).is_ok_and(|output| !output.status.success())
}

fn copy_file(from: &Path, to: &Path, mode: u32) -> Result<()> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    set_mode(to, mode)
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            copy_file(&entry.path(), &target, 0o644)?;
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_the_libraries_and_the_loader() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f86)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f86)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f86)\n";
        assert_eq!(
            parse_ldd(text),
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
            .map(PathBuf::from)
        );
    }
}
