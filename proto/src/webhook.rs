//! The generic HMAC JSON webhook other aggregators use. Headers
//! [`WEBHOOK_ID_HEADER`], [`WEBHOOK_TIMESTAMP_HEADER`] and
//! [`WEBHOOK_SIGNATURE_HEADER`] = `v1=` + hex HMAC-SHA256(secret,
//! `timestamp + "." + id + "." + raw_body`) ([`webhook_sign`],
//! [`webhook_verify`]); the timestamp is checked against a window like
//! Meituan's ([`check_timestamp`]). Pure: no I/O, no clock.

use std::fmt;

use hmac::{KeyInit, Mac};

pub use crate::meituan::{SigError, TimestampError, check_timestamp};
use crate::meituan::{hex_eq, lower_hex};

/// Header with the message (event) id, for de-duplication and replay protection.
pub const WEBHOOK_ID_HEADER: &str = "X-Webhook-Id";
/// Header with the send time, unix seconds.
pub const WEBHOOK_TIMESTAMP_HEADER: &str = "X-Webhook-Timestamp";
/// Header with `v1=<hex hmac>`.
pub const WEBHOOK_SIGNATURE_HEADER: &str = "X-Webhook-Signature";

fn webhook_mac(secret: &str, ts: &str, id: &str, body: &[u8]) -> hmac::Hmac<sha2_011::Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = hmac::Hmac::<sha2_011::Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The signature header value: `v1=` + lowercase hex
/// HMAC-SHA256(secret, `ts + "." + id + "." + body`). `ts` is signed as
/// written (the header's text).
pub fn webhook_sign(secret: &str, ts: impl fmt::Display, id: &str, body: &[u8]) -> String {
    let ts = ts.to_string();
    format!(
        "v1={}",
        lower_hex(&webhook_mac(secret, &ts, id, body).finalize().into_bytes())
    )
}

/// Checks a signature header. Several signatures may be given, separated
/// by spaces or commas (key rotation): one valid `v1=` entry is enough.
/// Comparison is constant-time. Check the timestamp separately with
/// [`check_timestamp`] and de-duplicate on `id`.
pub fn webhook_verify(
    secret: &str,
    ts: impl fmt::Display,
    id: &str,
    body: &[u8],
    signature: &str,
) -> Result<(), SigError> {
    let expected = webhook_sign(secret, ts, id, body);
    let mut any = false;
    let mut ok = false;
    for cand in signature.split([' ', ',']).filter(|s| s.starts_with("v1=")) {
        any = true;
        ok |= hex_eq(cand, &expected);
    }
    match (any, ok) {
        (_, true) => Ok(()),
        (false, _) => Err(SigError::Missing),
        (true, false) => Err(SigError::Mismatch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_vector_and_verify() {
        // python3: "v1=" + hmac.new(b"whsec", b'1700000000.evt_1.{"a":1}', sha256).hexdigest()
        let want = "v1=9714ba9c0e8c2e3eb458f0a03f58507e7bf78a4d9e579112c83f8edacde3ac79";
        let body = br#"{"a":1}"#;
        assert_eq!(webhook_sign("whsec", 1_700_000_000, "evt_1", body), want);
        assert_eq!(webhook_sign("whsec", "1700000000", "evt_1", body), want);
        assert_eq!(
            webhook_verify("whsec", "1700000000", "evt_1", body, want),
            Ok(())
        );
        assert_eq!(
            webhook_verify(
                "whsec",
                "1700000000",
                "evt_1",
                body,
                &format!("v1=00 {want}")
            ),
            Ok(())
        );
        assert_eq!(
            webhook_verify(
                "whsec",
                "1700000000",
                "evt_1",
                body,
                &want.to_uppercase().replace("V1", "v1")
            ),
            Ok(())
        );
        assert_eq!(
            webhook_verify("whsec", "1700000001", "evt_1", body, want),
            Err(SigError::Mismatch)
        );
        assert_eq!(
            webhook_verify("whsec", "1700000000", "evt_2", body, want),
            Err(SigError::Mismatch)
        );
        assert_eq!(
            webhook_verify("whsec", "1700000000", "evt_1", br#"{"a":2}"#, want),
            Err(SigError::Mismatch)
        );
        assert_eq!(
            webhook_verify("other", "1700000000", "evt_1", body, want),
            Err(SigError::Mismatch)
        );
        assert_eq!(
            webhook_verify("whsec", "1700000000", "evt_1", body, "sha256=abc"),
            Err(SigError::Missing)
        );
        assert_eq!(
            webhook_verify("whsec", "1700000000", "evt_1", body, ""),
            Err(SigError::Missing)
        );
    }
}
