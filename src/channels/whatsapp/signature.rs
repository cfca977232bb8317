//! `X-Hub-Signature-256`: Meta signs every webhook POST with HMAC-SHA256 of the raw body, keyed
//! by the app secret, and sends `sha256=<hex>`. Verify it on the raw bytes, before parsing:
//! re-serializing the JSON would change the bytes and break the signature.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header's value in Meta's form is `sha256=` followed by this many hex digits.
const PREFIX: &str = "sha256=";
const HEX_LEN: usize = 64;

/// Why a webhook's signature was refused. The variants let the handler log the difference
/// between a misconfigured sender (`Missing`, `Malformed`) and a wrong secret or forged body
/// (`Mismatch`); all three must be answered the same way.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("the X-Hub-Signature-256 header is missing")]
    Missing,
    #[error("the X-Hub-Signature-256 header is not `sha256=` and 64 hex digits")]
    Malformed,
    #[error("the X-Hub-Signature-256 header does not match the body")]
    Mismatch,
}

/// Checks `header` (the raw header value, e.g. `"sha256=54edfa…"`) against the HMAC-SHA256 of
/// `body` keyed by `app_secret`. Hex digits may be upper or lower case. The comparison runs in
/// constant time, so the time taken leaks nothing about how much of a forgery was right.
///
/// An empty `app_secret` never verifies: it means the integration was not configured, and
/// anyone can compute an HMAC with an empty key.
pub fn verify(app_secret: &[u8], body: &[u8], header: Option<&str>) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_digest = header
        .strip_prefix(PREFIX)
        .filter(|h| h.len() == HEX_LEN)
        .ok_or(SignatureError::Malformed)?;
    let mut expected = [0u8; HEX_LEN / 2];
    hex::decode_to_slice(hex_digest, &mut expected).map_err(|_| SignatureError::Malformed)?;

    if app_secret.is_empty() {
        return Err(SignatureError::Mismatch);
    }
    let mut mac = keyed(app_secret).ok_or(SignatureError::Mismatch)?;
    mac.update(body);
    // verify_slice compares in constant time (digest's `ctutils::CtEq`).
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// The header value Meta would send for `body`: `sha256=<lowercase hex>`. For tests,
/// benchmarks and the sandbox that plays Meta.
pub fn sign(app_secret: &[u8], body: &[u8]) -> String {
    let Some(mut mac) = keyed(app_secret) else {
        // Unreachable in practice (see `keyed`); an empty digest fails verification rather than
        // panicking.
        return PREFIX.to_owned();
    };
    mac.update(body);
    format!("{PREFIX}{}", hex::encode(mac.finalize().into_bytes()))
}

/// HMAC takes keys of any length, so this is always `Some`; the `Option` only spares us an
/// `expect` on `new_from_slice`'s `Result`.
fn keyed(app_secret: &[u8]) -> Option<Hmac<Sha256>> {
    <Hmac<Sha256> as KeyInit>::new_from_slice(app_secret).ok()
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use serde_json::Value;

    use super::*;

    fn vectors_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/signature")
    }

    /// (id, app secret, body, header) for each published vector.
    fn vectors() -> Vec<(String, Vec<u8>, Vec<u8>, String)> {
        let dir = vectors_dir();
        let file = std::fs::read(dir.join("meta_x_hub_signature_256_vectors.json")).unwrap();
        let vectors: Vec<Value> = serde_json::from_slice(&file).unwrap();
        vectors
            .iter()
            .map(|v| {
                assert_eq!(
                    v["expected_valid"], true,
                    "only valid vectors are published"
                );
                let body = match (v["body_file"].as_str(), v["body_utf8"].as_str()) {
                    (Some(file), _) => std::fs::read(dir.join(file)).unwrap(),
                    (None, Some(text)) => text.as_bytes().to_vec(),
                    (None, None) => panic!("vector without a body: {v}"),
                };
                (
                    v["id"].as_str().unwrap().to_owned(),
                    v["app_secret"].as_str().unwrap().as_bytes().to_vec(),
                    body,
                    v["x_hub_signature_256"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn every_published_vector_verifies_and_signs_to_the_same_header() {
        let vectors = vectors();
        assert!(vectors.len() >= 2);
        for (id, secret, body, header) in vectors {
            assert_eq!(verify(&secret, &body, Some(&header)), Ok(()), "{id}");
            assert_eq!(sign(&secret, &body), header, "{id}");
        }
    }

    #[test]
    fn body_files_are_byte_identical_to_the_signed_bodies() {
        // Guards the fixtures: a re-indented or newline-terminated body would no longer match its
        // signature, and the vector test would fail for the wrong reason.
        use sha2::Digest;
        let dir = vectors_dir();
        let file = std::fs::read(dir.join("meta_x_hub_signature_256_vectors.json")).unwrap();
        let vectors: Vec<Value> = serde_json::from_slice(&file).unwrap();
        for v in vectors.iter().filter(|v| v["body_file"].is_string()) {
            let body = std::fs::read(dir.join(v["body_file"].as_str().unwrap())).unwrap();
            let digest = hex::encode(Sha256::digest(&body));
            assert_eq!(v["body_sha256_of_file"], digest.as_str(), "{}", v["id"]);
        }
    }

    #[test]
    fn upper_case_hex_is_accepted() {
        for (id, secret, body, header) in vectors() {
            let upper = format!("sha256={}", header[PREFIX.len()..].to_uppercase());
            assert_eq!(verify(&secret, &body, Some(&upper)), Ok(()), "{id}");
        }
    }

    #[test]
    fn a_missing_header_is_missing() {
        assert_eq!(
            verify(b"secret", b"body", None),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn headers_not_in_metas_form_are_malformed() {
        let good = sign(b"secret", b"body");
        let hex_digest = &good[PREFIX.len()..];
        let cases = [
            String::new(),
            "sha256=".to_owned(),
            hex_digest.to_owned(),
            format!("sha1={hex_digest}"),
            format!("SHA256={hex_digest}"),
            format!(" sha256={hex_digest}"),
            format!("sha256= {hex_digest}"),
            format!("{good} "),
            format!("{good}00"),
            good[..good.len() - 2].to_owned(),
            format!("sha256={}", &hex_digest[..63]),
            format!("sha256={}g", &hex_digest[..63]),
            format!("sha256={}é", &hex_digest[..62]),
            format!("sha256={}", "0".repeat(128)),
        ];
        for header in cases {
            assert_eq!(
                verify(b"secret", b"body", Some(&header)),
                Err(SignatureError::Malformed),
                "{header:?}"
            );
        }
    }

    #[test]
    fn any_one_bit_flip_is_a_mismatch() {
        for (id, secret, body, header) in vectors() {
            let expected = hex::decode(&header[PREFIX.len()..]).unwrap();
            for bit in 0..expected.len() * 8 {
                let mut flipped = expected.clone();
                flipped[bit / 8] ^= 1 << (bit % 8);
                let forged = format!("sha256={}", hex::encode(&flipped));
                let result = verify(&secret, &body, Some(&forged));
                assert_eq!(
                    result,
                    Err(SignatureError::Mismatch),
                    "{id}, signature bit {bit}"
                );
            }
            let mut tampered = body.clone();
            tampered[0] ^= 1;
            let result = verify(&secret, &tampered, Some(&header));
            assert_eq!(result, Err(SignatureError::Mismatch), "{id}, body bit");

            let mut other_secret = secret.clone();
            other_secret[0] ^= 1;
            let result = verify(&other_secret, &body, Some(&header));
            assert_eq!(result, Err(SignatureError::Mismatch), "{id}, secret bit");
        }
    }

    #[test]
    fn an_empty_app_secret_never_verifies() {
        // Anyone can compute an HMAC with an empty key, so this must fail closed.
        let header = sign(b"", b"body");
        assert_eq!(
            verify(b"", b"body", Some(&header)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn sign_and_verify_agree_on_any_body() {
        for body in [&b""[..], b"{}", b"\x00\xff", &[b'a'; 10_000]] {
            let header = sign(b"app-secret", body);
            assert!(header.starts_with("sha256=") && header.len() == PREFIX.len() + HEX_LEN);
            assert_eq!(verify(b"app-secret", body, Some(&header)), Ok(()));
        }
    }
}
