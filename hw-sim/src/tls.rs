//! HTTPS for the simulators. At start a throwaway CA is made (rcgen) with a
//! server certificate for `127.0.0.1`/`localhost`, and a second CA with one
//! client certificate; [`TestPki::write_to`] puts them out as PEM files so
//! the gateway can be given the CA (its extra CA file) and the client
//! certificate. Served by tokio-rustls under hyper-util, the stack
//! `axum::serve` itself runs on; whether the peer presented a client
//! certificate the client CA signed rides along in every request's
//! extensions as [`ClientCert`].

use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::RootCertStore;
pub use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;

/// How long a TLS handshake may take.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// Certificates made for one run: all test material, never secret.
#[derive(Clone)]
pub struct TestPki {
    /// The CA that signed the server certificate: what a client must trust.
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    /// The CA client certificates must come from.
    pub client_ca_pem: String,
    /// A client certificate the client CA signed, and its key (PKCS#8).
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestPki")
    }
}

fn ca(name: &str) -> anyhow::Result<CertifiedIssuer<'static, KeyPair>> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // A name of its own per run: two runs' CAs are strangers to each other.
    let tag: u64 = rand::random();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} {tag:016x}"));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(CertifiedIssuer::self_signed(params, KeyPair::generate()?)?)
}

fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
    cn: &str,
    usage: ExtendedKeyUsagePurpose,
) -> anyhow::Result<(String, String)> {
    let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    let mut params = CertificateParams::new(names)?;
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

impl TestPki {
    /// A new CA with a server certificate for 127.0.0.1, ::1 and localhost,
    /// and a client CA with one client certificate.
    pub fn generate() -> anyhow::Result<TestPki> {
        let server_ca = ca("hw-sim test CA")?;
        let (server_cert_pem, server_key_pem) = leaf(
            &server_ca,
            &["127.0.0.1", "::1", "localhost"],
            "hw-sim",
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let client_ca = ca("hw-sim test client CA")?;
        let (client_cert_pem, client_key_pem) = leaf(
            &client_ca,
            &[],
            "hw-sim merchant 10000100",
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        Ok(TestPki {
            ca_pem: server_ca.pem(),
            server_cert_pem,
            server_key_pem,
            client_ca_pem: client_ca.pem(),
            client_cert_pem,
            client_key_pem,
        })
    }

    /// Writes `ca.pem`, `server.pem`, `server-key.pem`, `client-ca.pem`,
    /// `client.pem` and `client-key.pem` into `dir` (made if missing).
    pub fn write_to(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (name, text) in [
            ("ca.pem", &self.ca_pem),
            ("server.pem", &self.server_cert_pem),
            ("server-key.pem", &self.server_key_pem),
            ("client-ca.pem", &self.client_ca_pem),
            ("client.pem", &self.client_cert_pem),
            ("client-key.pem", &self.client_key_pem),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }

    /// The server's TLS setup. With `client_ca_pem`, clients may present a
    /// certificate (it must then chain to that CA; none is fine too: which
    /// paths need one is the application's call).
    pub fn server_config(&self, client_ca_pem: Option<&str>) -> anyhow::Result<Arc<ServerConfig>> {
        let certs = CertificateDer::pem_slice_iter(self.server_cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .context("the server certificate")?;
        let key = PrivateKeyDer::from_pem_slice(self.server_key_pem.as_bytes())
            .context("the server key")?;
        let builder = ServerConfig::builder();
        let builder = match client_ca_pem {
            None => builder.with_no_client_auth(),
            Some(pem) => {
                let mut roots = RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                    roots.add(c.context("the client CA")?)?;
                }
                anyhow::ensure!(!roots.is_empty(), "the client CA file holds no certificate");
                let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                    .allow_unauthenticated()
                    .build()?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Whether this request's connection presented a client certificate that
/// the configured client CA signed (the handshake refuses any other).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientCert(pub bool);

/// Serves `router` over TLS on `listener` until `shutdown` resolves; open
/// connections are then dropped.
pub async fn serve(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let acceptor = TlsAcceptor::from(config);
    let (closing, closed) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // A full descriptor table or the like: pause, then go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let mut closed = closed.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::info!(%peer, error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => return,
            };
            let has_cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .is_some_and(|c| !c.is_empty());
            let app = router.layer(axum::Extension(ClientCert(has_cert)));
            // HTTP/1.1 only, as the providers speak it (and ALPN says).
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app));
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended");
                },
                _ = closed.wait_for(|c| *c) => {}
            }
        });
    }
    let _ = closing.send(true);
    Ok(())
}
