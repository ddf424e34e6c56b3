//! Generates the gRPC code and the file descriptor set (for server reflection) into OUT_DIR,
//! with the vendored protoc, so no system protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let proto = root.join("mathrank/v1/mathrank.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("mathrank_descriptor.bin"))
        .compile_with_config(config, &[proto], &[root])?;
    Ok(())
}
