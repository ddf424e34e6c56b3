//! The gRPC contract of mathrank (`proto/mathrank/v1/mathrank.proto`), generated at build
//! time into OUT_DIR, its encoded file descriptor set for server reflection, and the
//! conversions between its messages and the engine's types. The messages also (de)serialize
//! as proto3 JSON (lowerCamelCase names; requests accept the proto names too), which is what
//! the HTTP API's `/v1/search`, `/v1/answers/{id}` and `/v1/info` speak.
//!
//! ```
//! use mathrank_proto::v1::SearchRequest;
//!
//! let request = SearchRequest { query: "Why is $\\sqrt 2$ irrational?".into(), top_k: 5, ..Default::default() };
//! assert_eq!(request.top_k, 5);
//! let params = mathrank_engine::SearchParams::try_from(request)?;
//! assert_eq!(params.top_k, 5);
//! assert!(!mathrank_proto::FILE_DESCRIPTOR_SET.is_empty());
//! # Ok::<(), mathrank_engine::EngineError>(())
//! ```

mod convert;

pub use convert::{SNIPPET_CHARS, parse_long_answers, partial_reason_name};

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
