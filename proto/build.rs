//! Compiles `proto/kestrel.proto` in pure Rust (protox), without a `protoc` binary.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/kestrel.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        // Counts an incoming message's repeated fields before decoding it (see src/codec.rs).
        .codec_path("crate::codec::CheckedCodec")
        // Labels in key order: the same event always encodes and prints the same way.
        .btree_map(".kestrel.v1.Container.pod_labels")
        .type_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)]")
        .type_attribute(".", "#[serde(rename_all = \"snake_case\")]")
        // Readers (the rule fixtures) write only the fields they set; a misspelt key is an error.
        .message_attribute(".", "#[serde(default, deny_unknown_fields)]")
        .compile_fds(descriptors)?;
    Ok(())
}
