//! Files: bytes on local disk under `PARLEY_DATA_DIR/files`, described by `file` rows.
//!
//! The bytes are content-addressed: a file lives at `files/<first two hex digits>/<sha256>`,
//! so the same photo stored twice (or by two tenants) takes the disk once, and a half-written
//! file can never be mistaken for a whole one: bytes are written to `files/tmp/` first and
//! renamed into place, which is atomic on one filesystem. A row is one tenant's handle on the
//! bytes; reading goes through the row, so another tenant's id is simply not found.
//!
//! IMPORTANT: with several replicas, `PARLEY_DATA_DIR` must be shared storage (or the replicas
//! that answer API calls must be the ones that download media), since each keeps its own disk.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, QueryFilter, QueryOrder};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ApiResult};
use crate::ids::{new_id, prefix};
use crate::state::AppState;
use crate::store::entities::file;
use crate::time::now_ms;

/// What a stored file belongs to. All optional: a file can stand alone.
#[derive(Debug, Clone, Default)]
pub struct FileLink<'a> {
    pub conversation_id: Option<&'a str>,
    pub message_id: Option<&'a str>,
    /// The inbound WhatsApp message the file came with.
    pub inbound_id: Option<&'a str>,
    /// Stored as the file's `meta`.
    pub meta: Option<Value>,
}

/// Hex sha256 of `bytes`, as files are addressed.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn root(state: &AppState) -> PathBuf {
    state.settings().data_dir.join("files")
}

/// Where the bytes with this hash live. The hash comes from our own rows, but it is checked
/// anyway: it becomes a path.
fn blob_path(root: &Path, sha256: &str) -> Option<PathBuf> {
    let ok = sha256.len() == 64
        && sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    ok.then(|| root.join(&sha256[..2]).join(sha256))
}

/// Writes `bytes` under their hash unless they are there already: temp file, fsync, rename.
fn write_blob(root: &Path, sha256: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let path = blob_path(root, sha256).context("not a sha256")?;
    if path.is_file() {
        return Ok(());
    }
    let tmp_dir = root.join("tmp");
    std::fs::create_dir_all(&tmp_dir).context("creating the files folder")?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).context("creating the files folder")?;
    }
    let tmp = tmp_dir.join(format!("{}.part", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        // Two writers of the same bytes may race here; either rename wins with equal content.
        std::fs::rename(&tmp, &path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.context("writing a file")
}

/// Stores `bytes` for the tenant and returns the new file row. Takes a write transaction of
/// its own: do not call it while holding one.
pub async fn store(
    state: &AppState,
    tenant_id: &str,
    bytes: &[u8],
    mime: &str,
    name: Option<&str>,
    link: &FileLink<'_>,
) -> ApiResult<file::Model> {
    let sha256 = sha256_hex(bytes);
    let root = root(state);
    let owned = bytes.to_vec();
    let hash = sha256.clone();
    tokio::task::spawn_blocking(move || write_blob(&root, &hash, &owned))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let now = now_ms();
    let model = file::ActiveModel {
        id: Set(new_id(prefix::FILE)),
        tenant_id: Set(tenant_id.to_owned()),
        name: Set(name.map(clean_name)),
        description: Set(None),
        mime_type: Set(mime.to_owned()),
        size: Set(bytes.len() as i64),
        sha256: Set(sha256),
        meta: Set(link.meta.clone().unwrap_or_else(|| json!({}))),
        conversation_id: Set(link.conversation_id.map(str::to_owned)),
        message_id: Set(link.message_id.map(str::to_owned)),
        inbound_id: Set(link.inbound_id.map(str::to_owned)),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let txn = crate::store::begin_write(state.store().db()).await?;
    let model = model.insert(&txn).await?;
    txn.commit().await?;
    Ok(model)
}

/// A file's bytes, or `None` when they are not on this disk. A file whose bytes no longer
/// match its hash is an error, never served.
pub async fn content(state: &AppState, f: &file::Model) -> ApiResult<Option<Vec<u8>>> {
    let Some(path) = blob_path(&root(state), &f.sha256) else {
        return Err(ApiError::internal(anyhow::anyhow!(
            "file {} has a malformed hash",
            f.id
        )));
    };
    let bytes = match tokio::fs::read(&path).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ApiError::internal(e)),
    };
    if sha256_hex(&bytes) != f.sha256 {
        return Err(ApiError::internal(anyhow::anyhow!(
            "file {} does not match its hash on disk",
            f.id
        )));
    }
    Ok(Some(bytes))
}

/// One of the tenant's files and its bytes; another tenant's id is 404.
pub async fn read(
    state: &AppState,
    tenant_id: &str,
    file_id: &str,
) -> ApiResult<(file::Model, Vec<u8>)> {
    let f = state
        .store()
        .scope(tenant_id)
        .find::<file::Entity>(file_id)
        .await?;
    match content(state, &f).await? {
        Some(bytes) => Ok((f, bytes)),
        None => Err(ApiError::internal(anyhow::anyhow!(
            "the content of file {file_id} is missing from the data folder"
        ))),
    }
}

/// The files that came with an inbound message, oldest first.
pub async fn for_inbound(
    state: &AppState,
    tenant_id: &str,
    inbound_id: &str,
) -> ApiResult<Vec<file::Model>> {
    let scope = state.store().scope(tenant_id);
    Ok(scope
        .select::<file::Entity>()
        .filter(file::Column::InboundId.eq(inbound_id))
        .order_by_asc(file::Column::Id)
        .all(scope.db())
        .await?)
}

/// Replaces a file's `meta` (a transcript, say).
pub async fn set_meta(state: &AppState, f: file::Model, meta: Value) -> ApiResult<file::Model> {
    let mut am: file::ActiveModel = f.into();
    am.meta = Set(meta);
    am.updated_at = Set(now_ms());
    let txn = crate::store::begin_write(state.store().db()).await?;
    let f = am.update(&txn).await?;
    txn.commit().await?;
    Ok(f)
}

/// A file name as a user's phone sent it, made safe to show and to put in a header: no
/// folders, no control characters, at most 255 bytes.
pub fn clean_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let mut out: String = base
        .chars()
        .map(|c| if c.is_control() || c == '"' { '_' } else { c })
        .collect();
    while out.len() > 255 {
        out.pop();
    }
    if out.trim().is_empty() {
        "file".to_owned()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_written_once_and_addressed_by_hash() {
        let dir = tempfile::tempdir().unwrap();
        let hash = sha256_hex(b"hello");
        assert_eq!(
            hash,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        write_blob(dir.path(), &hash, b"hello").unwrap();
        write_blob(dir.path(), &hash, b"hello").unwrap();
        let path = blob_path(dir.path(), &hash).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
        assert!(path.starts_with(dir.path().join("2c")));
        // Nothing is left behind in the temp folder.
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[test]
    fn hashes_that_are_not_hashes_are_not_paths() {
        let root = Path::new("/data/files");
        assert!(blob_path(root, "../../etc/passwd").is_none());
        assert!(blob_path(root, &"A".repeat(64)).is_none());
        assert!(blob_path(root, &"a".repeat(64)).is_some());
    }

    #[test]
    fn names_lose_folders_and_control_characters() {
        assert_eq!(clean_name("../../x/report.pdf"), "report.pdf");
        assert_eq!(clean_name("a\u{0}b\"c.txt"), "a_b_c.txt");
        assert_eq!(clean_name("   "), "file");
        assert!(clean_name(&"é".repeat(300)).len() <= 255);
    }
}
