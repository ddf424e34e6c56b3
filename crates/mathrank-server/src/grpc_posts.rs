//! The write API over gRPC: `mathrank.v1.Posts`, a stream of batches each answered in order,
//! under the write token.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use mathrank_engine::{Engine, ItemOutcome, PostInput, WriteItem};
use mathrank_proto::v1::{self, posts_server::Posts};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{BearerToken, UNAUTHENTICATED};
use crate::auth::{SEARCH_TOKEN_CANNOT_WRITE, WRITES_OFF};
use crate::grpc::{parse_grpc_timeout, status_of};
use crate::state::ServerState;

/// Checks a call to `Posts`: writes off is UNIMPLEMENTED (saying how to turn them on), a
/// search token PERMISSION_DENIED, anything else but the write token UNAUTHENTICATED.
pub(crate) fn check_write_token(
    write_token: Option<&BearerToken>,
    search_token: Option<&BearerToken>,
    header: Option<&str>,
) -> Result<(), Status> {
    let Some(token) = write_token else { return Err(Status::unimplemented(WRITES_OFF)) };
    if token.accepts(header) {
        Ok(())
    } else if search_token.is_some_and(|search| search.accepts(header)) {
        Err(Status::permission_denied(SEARCH_TOKEN_CANNOT_WRITE))
    } else {
        Err(Status::unauthenticated(UNAUTHENTICATED))
    }
}

/// The `mathrank.v1.Posts` service.
#[derive(Clone)]
pub struct PostsService {
    state: Arc<ServerState>,
}

impl PostsService {
    pub fn new(state: Arc<ServerState>) -> Self {
        Self { state }
    }

    fn engine(&self) -> Result<Arc<Engine>, Status> {
        let engine = self.state.ready_engine().map_err(|err| status_of(&err))?;
        if engine.store().is_none() {
            return Err(Status::unavailable("this server's index has no post store"));
        }
        Ok(engine)
    }
}

fn item_of(operation: v1::PostOperation) -> WriteItem {
    match operation.operation {
        Some(v1::post_operation::Operation::Upsert(post)) => WriteItem::Upsert(PostInput {
            id: post.id,
            post_type_id: post.post_type_id,
            parent_id: post.parent_id,
            accepted_answer_id: post.accepted_answer_id,
            title: post.title,
            body: post.body,
            tags: Some(post.tags),
            score: post.score,
            creation_date: post.creation_date,
            version: post.version,
        }),
        Some(v1::post_operation::Operation::Delete(delete)) => {
            WriteItem::Delete { id: delete.id, version: delete.version }
        }
        None => WriteItem::Invalid {
            id: None,
            field: "operation".into(),
            message: "is empty: set `upsert` or `delete`".into(),
        },
    }
}

fn result_of(item: ItemOutcome) -> v1::WriteResult {
    v1::WriteResult {
        id: item.id.unwrap_or_default(),
        result: item.result.name().into(),
        error: item.error.map(|error| v1::WriteError {
            code: error.code.into(),
            message: error.message,
            field: error.field,
        }),
    }
}

type WriteStream = Pin<Box<dyn Stream<Item = Result<v1::WriteResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Posts for PostsService {
    type WriteStream = WriteStream;

    async fn write(
        &self,
        request: Request<Streaming<v1::WriteRequest>>,
    ) -> Result<Response<Self::WriteStream>, Status> {
        let received = Instant::now();
        let timeout = request.metadata().get("grpc-timeout").and_then(|v| v.to_str().ok()).and_then(parse_grpc_timeout);
        let engine = self.engine()?;
        let deadline = engine.deadline_of(timeout.map(|t| received + t), received);
        let mut inbound = request.into_inner();
        // A few answers may wait for the client; then the server stops reading its stream.
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        let state = Arc::clone(&self.state);
        tokio::spawn(async move {
            loop {
                let batch = match inbound.message().await {
                    Ok(Some(batch)) => batch,
                    Ok(None) => break,
                    Err(status) => {
                        let _ = sender.send(Err(status)).await;
                        break;
                    }
                };
                let started = Instant::now();
                let items = batch.operations.into_iter().map(item_of).collect();
                let answer = match engine.write(items).await {
                    Ok(outcome) => {
                        let visible = batch.wait_visible && engine.wait_visible(outcome.seq, deadline).await;
                        Ok(v1::WriteResponse {
                            seq: outcome.seq,
                            items: outcome.items.into_iter().map(result_of).collect(),
                            visible,
                        })
                    }
                    Err(err) => Err(status_of(&err)),
                };
                let code = answer.as_ref().map_or_else(|status| format!("{:?}", status.code()), |_| "Ok".into());
                state.metrics().record_request("Posts.Write", &code, started.elapsed());
                let failed = answer.is_err();
                if sender.send(answer).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn rebuild(&self, _request: Request<v1::RebuildRequest>) -> Result<Response<v1::RebuildResponse>, Status> {
        let engine = self.engine()?;
        engine.request_rebuild().map_err(|err| status_of(&err))?;
        Ok(Response::new(v1::RebuildResponse { rebuilding: true }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_write_scope_is_its_own() {
        let write = BearerToken::new("w").unwrap();
        let search = BearerToken::new("s").unwrap();
        let code = |write: Option<&BearerToken>, header: &str| {
            check_write_token(write, Some(&search), Some(header)).err().map(|status| status.code())
        };
        assert_eq!(code(None, "Bearer w"), Some(tonic::Code::Unimplemented));
        assert!(check_write_token(None, None, None).unwrap_err().message().contains("--write-token"));
        assert_eq!(code(Some(&write), "Bearer w"), None);
        assert_eq!(code(Some(&write), "Bearer s"), Some(tonic::Code::PermissionDenied));
        assert_eq!(code(Some(&write), "Bearer x"), Some(tonic::Code::Unauthenticated));
    }
}
