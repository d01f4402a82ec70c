//! Compiles proto/ with protox (a protobuf compiler in Rust), so a build needs no protoc.

use std::path::PathBuf;

use prost::Message;

const FILES: &[&str] = &[
    "audrey/v1/readings.proto",
    "audrey/v1/registry.proto",
    "audrey/v1/device.proto",
    "audrey/v1/act.proto",
    "compat/sensor_service.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    // Once any rerun-if-changed is printed, Cargo stops watching this script by default.
    println!("cargo:rerun-if-changed=build.rs");
    for file in FILES {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    let descriptors = protox::compile(FILES, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    // Server reflection answers from this descriptor set.
    std::fs::write(out.join("descriptors.bin"), descriptors.encode_to_vec())?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
