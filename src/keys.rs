//! The two process-wide keys: the master key (encrypts tenant secrets) and the JWT secret (signs
//! dashboard sessions). Each comes from its setting, or else from a file in the data folder that
//! is created, with mode 0600, on first start. Multi-replica deployments must set both settings
//! (or share the files), so every replica uses the same keys.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretBox, SecretString};

use crate::config::Settings;

/// Length of both keys, in bytes.
pub const KEY_LEN: usize = 32;

/// A 32-byte key that never prints itself.
pub type Key = SecretBox<[u8; KEY_LEN]>;

/// Decodes a base64 (standard or URL-safe, padded or not) 32-byte key.
pub fn decode_key(encoded: &str) -> Result<[u8; KEY_LEN], String> {
    let trimmed = encoded.trim();
    let bytes = STANDARD
        .decode(trimmed)
        .or_else(|_| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(trimmed.trim_end_matches('='))
        })
        .map_err(|_| "is not valid base64".to_owned())?;
    <[u8; KEY_LEN]>::try_from(bytes.as_slice())
        .map_err(|_| format!("must decode to {KEY_LEN} bytes, got {}", bytes.len()))
}

/// Both keys, ready to use.
pub struct Keys {
    pub master: Key,
    /// The master key before the last rotation, if any: values sealed under it stay readable.
    pub master_previous: Option<Key>,
    pub jwt: Key,
}

impl Keys {
    /// Loads the keys from settings or key files, creating missing files.
    pub fn load_or_create(settings: &Settings) -> anyhow::Result<Self> {
        Ok(Self {
            master: load_or_create_one(
                settings.master_key.as_ref(),
                &settings.data_dir.join(MASTER_FILE),
                "PARLEY_MASTER_KEY",
            )?,
            master_previous: load_previous(settings)?,
            jwt: load_or_create_one(
                settings.jwt_secret.as_ref(),
                &settings.data_dir.join("jwt.key"),
                "PARLEY_JWT_SECRET",
            )?,
        })
    }
}

fn load_previous(settings: &Settings) -> anyhow::Result<Option<Key>> {
    if let Some(v) = &settings.master_key_previous {
        let key = decode_key(v.expose_secret())
            .map_err(|e| anyhow::anyhow!("PARLEY_MASTER_KEY_PREVIOUS: {e}"))?;
        return Ok(Some(Key::new(Box::new(key))));
    }
    let file = settings.data_dir.join(PREVIOUS_FILE);
    if settings.master_key.is_none() && file.exists() {
        let text = std::fs::read_to_string(&file)?;
        let key = decode_key(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        return Ok(Some(Key::new(Box::new(key))));
    }
    Ok(None)
}

const MASTER_FILE: &str = "master.key";
const PREVIOUS_FILE: &str = "master.key.previous";

/// A new random key.
pub fn generate() -> anyhow::Result<Key> {
    let mut key = [0u8; KEY_LEN];
    getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(Key::new(Box::new(key)))
}

/// Base64 of a key, to print or store.
pub fn encode(key: &Key) -> SecretString {
    SecretString::from(STANDARD.encode(key.expose_secret()))
}

/// After a rotation with file-based keys: the new key becomes `master.key`, the old one
/// `master.key.previous`. Each file is written whole to a temporary name and renamed, so a
/// crash leaves either the old or the new file, never half of one.
pub fn replace_master_key_file(settings: &Settings, old: &Key, new: &Key) -> anyhow::Result<()> {
    write_atomically(&settings.data_dir.join(PREVIOUS_FILE), old)?;
    write_atomically(&settings.data_dir.join(MASTER_FILE), new)
}

fn write_atomically(path: &Path, key: &Key) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(&tmp)?;
    f.write_all(encode(key).expose_secret().as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn load_or_create_one(
    setting: Option<&SecretString>,
    file: &Path,
    name: &str,
) -> anyhow::Result<Key> {
    if let Some(value) = setting {
        let key = decode_key(value.expose_secret()).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        return Ok(Key::new(Box::new(key)));
    }
    if file.exists() {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("{name} is unset and {} cannot be read", file.display()))?;
        let key = decode_key(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        return Ok(Key::new(Box::new(key)));
    }
    let key = create_key_file(file)
        .with_context(|| format!("{name} is unset and {} cannot be created", file.display()))?;
    tracing::warn!(
        path = %file.display(),
        "{name} is unset: generated a new key and saved it with mode 0600; back it up, or set {name}"
    );
    Ok(key)
}

fn create_key_file(path: &Path) -> anyhow::Result<Key> {
    let mut key = [0u8; KEY_LEN];
    getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    // create_new: two processes starting at once must not overwrite each other's key.
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut f) => {
            f.write_all(STANDARD.encode(key).as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            Ok(Key::new(Box::new(key)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path)?;
            let key = decode_key(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            Ok(Key::new(Box::new(key)))
        }
        Err(e) => Err(e.into()),
    }
}

/// Expose a key's bytes. One place, so reviews can find every use.
pub fn bytes(key: &Key) -> &[u8; KEY_LEN] {
    key.expose_secret()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_key_files_are_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/master.key");
        let a = load_or_create_one(None, &path, "PARLEY_MASTER_KEY").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let b = load_or_create_one(None, &path, "PARLEY_MASTER_KEY").unwrap();
        assert_eq!(bytes(&a), bytes(&b));
    }

    #[test]
    fn decode_key_checks_length_and_encoding() {
        assert!(decode_key(&STANDARD.encode([7u8; 32])).is_ok());
        assert!(
            decode_key(&STANDARD.encode([7u8; 31]))
                .unwrap_err()
                .contains("32 bytes")
        );
        assert!(decode_key("***").unwrap_err().contains("base64"));
    }
}
