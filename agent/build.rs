//! Builds the eBPF programs (agent-ebpf/programs) with aya-build on the nightly toolchain and
//! leaves the object in OUT_DIR for `include_bytes_aligned!`, without its line info.

use std::path::{Path, PathBuf};

use anyhow::Context;
use object::{Object, ObjectSection};

/// Where the `line_info_len` field sits in the `.BTF.ext` header (after magic, version, flags,
/// hdr_len, func_info_off, func_info_len and line_info_off).
const LINE_INFO_LEN_OFFSET: usize = 20;

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let programs = manifest_dir.join("../agent-ebpf/programs").canonicalize()?;
    let abi = manifest_dir.join("../agent-ebpf/abi").canonicalize()?;
    println!("cargo:rerun-if-changed={}", abi.display());
    // The programs crate is its own workspace (it builds for bpfel-unknown-none with nightly);
    // aya-build runs `cargo build --package` in the current directory, so build from there.
    std::env::set_current_dir(&programs)?;
    let root_dir = programs.to_str().expect("UTF-8 path");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "kestrel-ebpf",
            root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )?;
    drop_line_info(&PathBuf::from(std::env::var("OUT_DIR")?).join("kestrel"))
}

/// Sets the object's `.BTF.ext` line-info length to 0. All programs share one ELF section, and
/// aya copies that section's whole line info into every program it parses: with over a
/// hundred programs that copy was the largest part of the agent's start-up memory peak (and the
/// kernel kept a copy per program). Line info only annotates verifier logs with source lines;
/// the function info and the BTF the kernel needs stay as they are.
fn drop_line_info(path: &Path) -> anyhow::Result<()> {
    let mut bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let range = {
        let file = object::File::parse(&*bytes).context("parsing the eBPF object")?;
        let Some(section) = file.section_by_name(".BTF.ext") else {
            return Ok(()); // built without BTF: nothing to drop
        };
        let (start, size) = section.file_range().context(".BTF.ext has no file range")?;
        start as usize..(start + size) as usize
    };
    let header = &mut bytes[range];
    let hdr_len = u32::from_le_bytes(header[4..8].try_into()?) as usize;
    anyhow::ensure!(
        hdr_len >= LINE_INFO_LEN_OFFSET + 4,
        ".BTF.ext header of {hdr_len} bytes has no line info fields"
    );
    header[LINE_INFO_LEN_OFFSET..LINE_INFO_LEN_OFFSET + 4].copy_from_slice(&0u32.to_le_bytes());
    std::fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))
}
