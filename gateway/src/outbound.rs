//! Outbound HTTPS: every client the gateway builds to call a payment
//! provider or a delivery platform. rustls (aws-lc-rs) verifying servers
//! against the system's public roots (rustls-platform-verifier), plus the
//! certificates of an optional extra CA file for a private (test) CA; an
//! optional client certificate for mutual TLS; answers read with a cap.

use std::time::Duration;

use anyhow::Context;
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};

/// The largest answer read from a provider or a platform. Real answers are
/// a few KiB; anything bigger is refused before it costs memory.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Names a PEM file of CA certificates trusted beside the public roots.
pub const EXTRA_CA_ENV: &str = "GATEWAY_EXTRA_CA_FILE";

/// The PEM text of the extra CA file at `path` (the configuration's
/// `extra_ca_file`, see [`crate::config`]), checked to hold at least one
/// certificate; `None` when no path is given.
pub fn extra_ca(path: Option<&str>) -> anyhow::Result<Option<String>> {
    let Some(path) = path.filter(|p| !p.trim().is_empty()) else {
        return Ok(None);
    };
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("{EXTRA_CA_ENV}: reading the extra CA file {path}"))?;
    let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
        .with_context(|| format!("{EXTRA_CA_ENV}: {path} is not PEM certificates"))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{EXTRA_CA_ENV}: {path} holds no certificate"
    );
    Ok(Some(pem))
}

/// A client certificate and its private key (mutual TLS), kept as PEM.
/// Its `Debug` is redacted; the key is never logged.
#[derive(Clone)]
pub struct ClientIdentity {
    pem: SecretString,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientIdentity(<redacted>)")
    }
}

impl ClientIdentity {
    /// A certificate (chain) and its private key (PKCS#8, PKCS#1 or SEC1), PEM.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> anyhow::Result<ClientIdentity> {
        let id = ClientIdentity {
            pem: SecretString::from(format!("{}\n{}\n", cert_pem.trim(), key_pem.trim())),
        };
        // Checked now, so a bad file stops the start and not the first refund.
        id.identity()?;
        Ok(id)
    }

    /// A PKCS#12 file (`apiclient_cert.p12`) and its password.
    pub fn from_pkcs12(der: &[u8], password: &str) -> anyhow::Result<ClientIdentity> {
        let store = p12_keystore::KeyStore::from_pkcs12(
            der,
            password,
            p12_keystore::Pkcs12ImportPolicy::Relaxed,
        )
        .map_err(|e| anyhow::anyhow!("the PKCS#12 file cannot be read (wrong password?): {e}"))?;
        let (_, chain) = store
            .private_key_chain()
            .context("the PKCS#12 file holds no private key")?;
        anyhow::ensure!(
            !chain.certs().is_empty(),
            "the PKCS#12 file holds no certificate for its key"
        );
        let mut certs = String::new();
        for c in chain.certs() {
            certs.push_str(&pem_block("CERTIFICATE", c.as_der()));
        }
        ClientIdentity::from_pem(&certs, &pem_block("PRIVATE KEY", chain.key().as_der()))
    }

    fn identity(&self) -> anyhow::Result<reqwest::Identity> {
        reqwest::Identity::from_pem(self.pem.expose_secret().as_bytes())
            .map_err(|_| anyhow::anyhow!("not a PEM certificate with its private key"))
    }
}

fn pem_block(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    // Base64 is ASCII, so 64-byte chunks are whole characters.
    for line in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(line).unwrap_or_default());
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

/// An HTTPS (and HTTP) client: `timeout` bounds every call and
/// `connect_timeout` the connection; servers are checked against the public
/// roots and `extra_ca_pem`; `identity` is presented when a server asks.
pub fn client(
    timeout: Duration,
    connect_timeout: Duration,
    extra_ca_pem: Option<&str>,
    identity: Option<&ClientIdentity>,
) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(connect_timeout)
        .https_only(false);
    if let Some(pem) = extra_ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .context("the extra CA certificates")?;
        b = b.tls_certs_merge(certs);
    }
    if let Some(id) = identity {
        b = b.identity(id.identity()?);
    }
    Ok(b.build()?)
}

/// Why an answer could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// Bigger than the cap: refused unread.
    TooLarge { limit: usize },
    /// The connection failed while reading.
    Transport(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::TooLarge { limit } => {
                write!(f, "the answer is larger than {limit} bytes: refused")
            }
            ReadError::Transport(e) => write!(f, "reading the answer: {e}"),
        }
    }
}

/// Reads `resp`'s body, at most `limit` bytes: a larger one (announced or
/// streamed) is refused as soon as it is known, never buffered whole.
pub async fn read_capped(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, ReadError> {
    if resp
        .content_length()
        .is_some_and(|n| usize::try_from(n).map_or(true, |n| n > limit))
    {
        return Err(ReadError::TooLarge { limit });
    }
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len().saturating_add(chunk.len()) > limit {
                    return Err(ReadError::TooLarge { limit });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(ReadError::Transport(e.without_url().to_string())),
        }
    }
}

/// A transport error's cause chain in one line (rustls names the reason a
/// certificate was refused only deep in the chain).
pub fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut s = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        "transport".to_owned()
    };
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_need_a_certificate_and_its_key() {
        assert!(ClientIdentity::from_pem("", "").is_err());
        assert!(ClientIdentity::from_pkcs12(b"not a p12", "pw").is_err());
        let id = ClientIdentity {
            pem: SecretString::from("secret".to_owned()),
        };
        assert!(!format!("{id:?}").contains("secret"));
    }

    #[test]
    fn pkcs12_files_load_with_their_password_only() {
        let pki = hw_sim::tls::TestPki::generate().expect("pki");
        let der = |pem: &str| {
            let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("base64")
        };
        let key = p12_keystore::PrivateKey::from_der(&der(&pki.client_key_pem)).expect("key");
        let cert = p12_keystore::Certificate::from_der(&der(&pki.client_cert_pem)).expect("cert");
        let mut store = p12_keystore::KeyStore::new();
        store.add_entry(
            "apiclient",
            p12_keystore::KeyStoreEntry::PrivateKeyChain(p12_keystore::PrivateKeyChain::new(
                b"1".to_vec(),
                key,
                vec![cert],
            )),
        );
        // Modern (PBES2/AES) and legacy (3DES, SHA-1 MAC), as WeChat's
        // older apiclient_cert.p12 files are.
        let modern = store.writer("10000100").write().expect("p12");
        let legacy = store
            .writer("10000100")
            .encryption_algorithm(p12_keystore::EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc)
            .mac_algorithm(p12_keystore::MacAlgorithm::HmacSha1)
            .write()
            .expect("p12");
        for p12 in [modern, legacy] {
            let id = ClientIdentity::from_pkcs12(&p12, "10000100").expect("identity");
            assert!(id.identity().is_ok());
            let err = ClientIdentity::from_pkcs12(&p12, "wrong").expect_err("wrong password");
            assert!(!format!("{err:#}").contains("10000100"), "{err:#}");
        }
    }

    #[test]
    fn pem_blocks_wrap_at_64() {
        let b = pem_block("CERTIFICATE", &[0u8; 100]);
        let lines: Vec<&str> = b.lines().collect();
        assert_eq!(lines[0], "-----BEGIN CERTIFICATE-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines.last().copied(), Some("-----END CERTIFICATE-----"));
    }
}
