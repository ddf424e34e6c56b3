//! Accepting connections for the server: plaintext or TLS, with ALPN offering both `h2` and
//! `http/1.1`. tonic's own TLS offers only `h2`, which would lock out the HTTP/1.1 clients
//! that search engines use; this is why mathrank accepts connections itself. The loop also
//! survives accept errors (EMFILE under a connection flood) by backing off instead of
//! stopping, and bounds the TLS handshakes in progress.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_stream::wrappers::ReceiverStream;

use crate::ServeError;

/// Connections accepted but not yet taken by the server.
const BACKLOG: usize = 128;
/// TLS handshakes in progress at once; more connections wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 256;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// PEM files of the server's TLS identity.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The rustls configuration of `files`, offering HTTP/2 and HTTP/1.1.
pub(crate) fn tls_acceptor(files: &TlsFiles) -> Result<TlsAcceptor, ServeError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| ServeError::TlsFile { path: path.display().to_string(), source })
    };
    let cert_pem = read(&files.cert)?;
    let key_pem = read(&files.key)?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| ServeError::Tls(format!("{} holds no valid PEM certificates ({err})", files.cert.display())))?;
    if certs.is_empty() {
        return Err(ServeError::Tls(format!("{} holds no PEM certificate", files.cert.display())));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|err| ServeError::Tls(format!("{} holds no PEM private key ({err})", files.key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| ServeError::Tls(err.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|err| ServeError::Tls(format!("certificate and key do not form an identity ({err})")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts `listener`'s connections into a stream for the server. The loop ends, and the
/// port closes, when the server drops the stream.
pub(crate) fn plain(listener: TcpListener) -> ReceiverStream<std::io::Result<TcpStream>> {
    let (sender, receiver) = mpsc::channel(BACKLOG);
    tokio::spawn(async move {
        while let Some(stream) = accept(&listener, &sender).await {
            if sender.send(Ok(stream)).await.is_err() {
                break;
            }
        }
    });
    ReceiverStream::new(receiver)
}

/// Like [`plain`], with each connection's TLS handshake done on its own task.
pub(crate) fn tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
) -> ReceiverStream<std::io::Result<tokio_rustls::server::TlsStream<TcpStream>>> {
    let (sender, receiver) = mpsc::channel(BACKLOG);
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = Arc::clone(&handshakes).acquire_owned().await else { break };
            let Some(stream) = accept(&listener, &sender).await else { break };
            let (acceptor, sender) = (acceptor.clone(), sender.clone());
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = sender.send(Ok(tls)).await;
                    }
                    Ok(Err(err)) => tracing::debug!(error = %err, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(receiver)
}

/// The next connection, or `None` once the server has gone.
async fn accept<T>(listener: &TcpListener, sender: &mpsc::Sender<T>) -> Option<TcpStream> {
    loop {
        tokio::select! {
            () = sender.closed() => return None,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    return Some(stream);
                }
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed; retrying shortly");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
}
