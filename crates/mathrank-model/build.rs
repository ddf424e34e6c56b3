//! Generates the ONNX protobuf messages (a minimal onnx.proto of this crate) with the vendored
//! protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let proto = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    println!("cargo:rerun-if-changed={}", proto.join("onnx.proto").display());
    config.compile_protos(&[proto.join("onnx.proto")], &[proto])?;
    Ok(())
}
