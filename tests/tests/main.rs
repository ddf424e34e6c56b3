//! mathrank's integration tests: one binary (as ripgrep's), a module per domain, so that
//! tonic, tantivy and ONNX Runtime are linked once. Shared helpers (the sample index, the tiny
//! model, ONNX Runtime, an in-process server on port 0) are in this package's library,
//! `mathrank_tests`.

mod adversarial;
mod connections;
mod deploy;
mod grpc;
mod http;
mod index;
mod live;
mod model;
mod overload;
mod page;
mod readme;
mod replicas;
mod rerank;
