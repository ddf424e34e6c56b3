//! Generates the gRPC code and the file descriptor set (for server reflection) into OUT_DIR,
//! with the vendored protoc, so no system protoc is needed. Messages also derive serde with
//! proto3 JSON names (lowerCamelCase), so that the HTTP/JSON API mirrors the gRPC contract
//! from the same types; requests accept the proto field names too.

/// Request fields whose proto name differs from their JSON name: accepted under both.
const SNAKE_ALIASES: &[(&str, &str)] = &[
    ("SearchRequest", "top_k"),
    ("SearchRequest", "rerank_depth"),
    ("SearchRequest", "include_body"),
    ("SearchRequest", "long_answers"),
    ("SearchRequest", "fusion_weight"),
    ("SearchRequest", "rrf_k"),
    ("Filters", "tags_any"),
    ("Filters", "tags_all"),
    ("Filters", "min_votes"),
    ("Filters", "accepted_only"),
    ("Filters", "created_from"),
    ("Filters", "created_to"),
    ("RerankRequest", "top_n"),
    ("RerankRequest", "return_text"),
    ("RerankRequest", "long_answers"),
    ("GetAnswerRequest", "answer_id"),
];

/// Fields whose JSON name is their proto name: the write API names its sequence numbers so
/// (`seq`, `searchable_seq`), and `/v1/info` says it the same way.
const PROTO_NAMED: &[(&str, &str)] = &[("InfoResponse", "searchable_seq")];

/// `optional` fields: omitted from JSON when unset, as proto3 JSON does.
const OPTIONAL: &[(&str, &str)] = &[
    ("SearchRequest", "rerank"),
    ("Filters", "min_votes"),
    ("Filters", "created_from"),
    ("Filters", "created_to"),
    ("Hit", "rerank_logit"),
    ("Hit", "relevance"),
    ("RerankResult", "relevance"),
    ("RerankResult", "logit"),
    ("RerankResult", "relevant_logit"),
    ("Hit", "relevant_logit"),
    ("Hit", "fused_score"),
    ("SearchRequest", "fusion_weight"),
    ("SearchRequest", "rrf_k"),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    // Read when the script runs, not baked in when it is compiled: a build script compiled in
    // one checkout may be reused by another that shares the target directory.
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let protos = [root.join("mathrank/v1/mathrank.proto"), root.join("mathrank/v1/posts.proto")];
    for proto in &protos {
        println!("cargo:rerun-if-changed={}", proto.display());
    }
    let mut builder = tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("mathrank_descriptor.bin"))
        .message_attribute(
            ".mathrank.v1",
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(rename_all = \"camelCase\", default, deny_unknown_fields)]",
        );
    // A oneof is an enum of its own: it needs the derives the messages get.
    builder = builder.type_attribute(
        ".mathrank.v1.PostOperation.operation",
        "#[derive(serde::Serialize, serde::Deserialize)] #[serde(rename_all = \"camelCase\")]",
    );
    for (message, field) in SNAKE_ALIASES {
        builder = builder
            .field_attribute(format!(".mathrank.v1.{message}.{field}"), format!("#[serde(alias = \"{field}\")]"));
    }
    for (message, field) in PROTO_NAMED {
        builder = builder.field_attribute(
            format!(".mathrank.v1.{message}.{field}"),
            format!("#[serde(rename = \"{field}\", alias = \"searchableSeq\")]"),
        );
    }
    for (message, field) in OPTIONAL {
        builder = builder.field_attribute(
            format!(".mathrank.v1.{message}.{field}"),
            "#[serde(skip_serializing_if = \"Option::is_none\")]",
        );
    }
    builder.compile_with_config(config, &protos, &[root])?;
    Ok(())
}
