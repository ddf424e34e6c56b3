//! The gRPC contract of mathrank (`proto/mathrank/v1/mathrank.proto`), generated at build
//! time into OUT_DIR, and its encoded file descriptor set for server reflection. A leaf crate
//! (prost, tonic and serde only): a gRPC client builds it without the engine, and the
//! conversions to and from the engine's types live in `mathrank-server`. The messages also
//! (de)serialize as proto3 JSON (lowerCamelCase names; requests accept the proto names too),
//! which is what the HTTP API's `/v1/search`, `/v1/answers/{id}` and `/v1/info` speak.
//!
//! ```
//! use mathrank_proto::v1::SearchRequest;
//!
//! let request = SearchRequest { query: "Why is $\\sqrt 2$ irrational?".into(), top_k: 5, ..Default::default() };
//! assert_eq!(request.top_k, 5);
//! let json = serde_json::to_value(&request)?;
//! assert_eq!(json["topK"], 5);
//! assert!(!mathrank_proto::FILE_DESCRIPTOR_SET.is_empty());
//! # Ok::<(), serde_json::Error>(())
//! ```

/// `package mathrank.v1`.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_docs, rust_2018_idioms)]
    tonic::include_proto!("mathrank.v1");
}

/// Encoded `FileDescriptorSet` of `mathrank.v1`, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("mathrank_descriptor");

/// Full name of the service, as used by health checks and reflection.
pub const SERVICE_NAME: &str = "mathrank.v1.AnswerSearch";

/// Full name of the write service.
pub const POSTS_SERVICE_NAME: &str = "mathrank.v1.Posts";

#[cfg(test)]
mod tests {
    use super::v1;

    #[test]
    fn json_uses_proto3_names_and_accepts_proto_names() {
        let camel: v1::SearchRequest =
            serde_json::from_str(r#"{"query":"q","topK":3,"filters":{"tagsAny":["a"],"minVotes":1}}"#).unwrap();
        let snake: v1::SearchRequest =
            serde_json::from_str(r#"{"query":"q","top_k":3,"filters":{"tags_any":["a"],"min_votes":1}}"#).unwrap();
        assert_eq!(camel, snake);
        assert_eq!(camel.top_k, 3);
        let err = serde_json::from_str::<v1::SearchRequest>(r#"{"query":"q","topk":3}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `topk`"), "{err}");
        let json = serde_json::to_value(v1::Hit { answer_id: 7, relevance: None, ..Default::default() }).unwrap();
        assert_eq!(json["answerId"], 7);
        assert!(json.get("relevance").is_none());
    }
}
