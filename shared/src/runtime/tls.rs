//! The TLS acceptor of the `[tls]` certificate: smtpd's STARTTLS and the
//! console's HTTPS (`[web] tls = true`). rustls' safe defaults (TLS 1.2
//! and 1.3), the ring provider.

use std::sync::Arc;

use tokio_rustls::TlsAcceptor;

use crate::runtime::worker::TlsPem;

/// The acceptor of a certificate chain and key (PEM); `None` without them.
pub fn acceptor(pem: Option<&TlsPem>) -> anyhow::Result<Option<TlsAcceptor>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let Some(pem) = pem else { return Ok(None) };
    let certs = CertificateDer::pem_slice_iter(pem.cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("tls.cert: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(pem.key.as_bytes())
        .map_err(|e| anyhow::anyhow!("tls.key: {e}"))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| anyhow::anyhow!("tls: {e}"))?;
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}
