//! `cargo xtask deb`: the Debian packages `kestrel-agent` and `kestrel-collector` for VMs,
//! made by cargo-deb from each crate's `[package.metadata.deb]` (binary, systemd unit from
//! `deploy/systemd`, default configuration from `deploy/packages`, the collector's rules),
//! written to `target/debian/`.

use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::util;

/// The packages, by crate name (each crate's metadata names its package the same).
const PACKAGES: [&str; 2] = ["kestrel-agent", "kestrel-collector"];

/// Builds both packages from the binaries of `profile` (`release` or `debug`), building those
/// first unless `build` is false; returns the `.deb` files written.
pub fn packages(profile: &str, build: bool) -> Result<Vec<PathBuf>> {
    if util::find_tool("cargo-deb").is_none() {
        bail!("deb: cargo-deb not found; `cargo xtask setup` installs it");
    }
    if build {
        util::build_binaries("deb", profile)?;
    }
    let out = util::workspace_root().join("target/debian");
    let mut written = Vec::new();
    for package in PACKAGES {
        let mut cargo = util::cargo();
        cargo
            .args(["deb", "--no-build", "--package", package, "--output"])
            .arg(&out)
            // cargo-deb names Cargo's `dev` profile by its own name; the assets' paths
            // (`target/release/…`) follow the profile.
            .args([
                "--profile",
                if profile == "debug" { "dev" } else { profile },
            ]);
        let output = util::capture(&mut cargo)?;
        if !output.status.success() {
            bail!(
                "deb: cargo deb --package {package} failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let deb = String::from_utf8_lossy(&output.stdout)
            .lines()
            .rev()
            .find(|line| line.ends_with(".deb"))
            .map(|line| PathBuf::from(line.trim()));
        match deb {
            Some(deb) => {
                println!("deb: wrote {}", deb.display());
                written.push(deb);
            }
            None => bail!("deb: cargo deb --package {package} named no .deb it wrote"),
        }
    }
    Ok(written)
}
