//! The server's TLS identity, with ALPN offering both `h2` and `http/1.1`. tonic's own TLS
//! offers only `h2`, which would lock out the HTTP/1.1 clients that search engines use; this is
//! one reason mathrank accepts connections itself (see `connections`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use crate::error::ServeError;

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
