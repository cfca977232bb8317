//! Splits the input into an app secret, a body and a header (libFuzzer's `arbitrary`) and checks
//! the webhook signature. It must never panic, must accept only the true signature, and must
//! refuse the true signature with one hex digit changed.

#![no_main]

use libfuzzer_sys::fuzz_target;
use parley::channels::whatsapp::signature::{SignatureError, sign, verify};

const PREFIX: &str = "sha256=";

fuzz_target!(|input: (&[u8], &[u8], Option<&str>, u8)| {
    let (secret, body, header, digit) = input;
    let expected = sign(secret, body);

    if verify(secret, body, header).is_ok() {
        let header = header.unwrap_or_default();
        assert!(!secret.is_empty(), "an empty secret verified");
        assert!(header.starts_with(PREFIX), "accepted {header:?}");
        assert!(header[PREFIX.len()..].eq_ignore_ascii_case(&expected[PREFIX.len()..]));
    }

    let genuine = verify(secret, body, Some(&expected));
    let want = if secret.is_empty() {
        Err(SignatureError::Mismatch)
    } else {
        Ok(())
    };
    assert_eq!(genuine, want);

    // Change one hex digit of the genuine signature to another hex digit.
    let i = PREFIX.len() + usize::from(digit) % 64;
    let mut forged = expected.clone();
    let replacement = if &expected[i..=i] == "0" { "1" } else { "0" };
    forged.replace_range(i..=i, replacement);
    assert_eq!(
        verify(secret, body, Some(&forged)),
        Err(SignatureError::Mismatch)
    );
});
