//! Builds the eBPF programs (agent-ebpf/programs) with aya-build on the nightly toolchain and
//! leaves the object in OUT_DIR for `include_bytes_aligned!`.

use std::path::PathBuf;

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
    )
}
