//! Generates the ONNX protobuf messages (a minimal onnx.proto of this crate) with the vendored
//! protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // Read when the script runs, not baked in when it is compiled: a build script compiled in
    // one checkout may be reused by another that shares the target directory.
    let proto = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    println!("cargo:rerun-if-changed={}", proto.join("onnx.proto").display());
    config.compile_protos(&[proto.join("onnx.proto")], &[proto])?;
    Ok(())
}
