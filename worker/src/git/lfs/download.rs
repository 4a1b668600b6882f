//! One object's download: from the href the batch API gave (vetted like any upstream
//! URL first), into a temporary file inside the mirror, checked against the pointer's
//! size and SHA-256 as it arrives, then renamed into git-lfs's layout. A reader of the
//! mirror sees the whole object or none.

use std::path::{Path, PathBuf};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::batch::{check, Action};
use super::pointer::Pointer;
use super::LfsError;
use crate::git::transport::{bounded, describe, Session};

/// Downloads `pointer`'s object into the mirror at `path`; its size in bytes on success.
pub async fn fetch_object(
    client: &reqwest::Client,
    session: &Session,
    path: &Path,
    pointer: &Pointer,
    action: Action,
) -> Result<u64, LfsError> {
    let href = url::Url::parse(&action.href)
        .map_err(|_| download_error(pointer, "the href is not a URL".into()))?;
    check(session, &href)?;
    let mut headers = HeaderMap::new();
    for (name, value) in &action.header {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) else {
            return Err(download_error(pointer, "a header is not valid".into()));
        };
        headers.insert(name, value);
    }
    // only the headers the batch API gave: the clone URL's credentials stay with its host
    let request = client.get(href).headers(headers);
    let mut response = bounded(session, request.send())
        .await
        .map_err(|_| LfsError::Stopped)?
        .map_err(|e| download_error(pointer, describe(&e)))?;
    if !response.status().is_success() {
        let why = format!("HTTP {}", response.status().as_u16());
        return Err(download_error(pointer, why));
    }
    let tmp_dir = path.join("lfs").join("tmp");
    tokio::fs::create_dir_all(&tmp_dir)
        .await
        .map_err(|e| LfsError::Disk(e.to_string()))?;
    let tmp = tmp_dir.join(format!("{}-{}", pointer.oid, uuid::Uuid::new_v4().simple()));
    let received = receive(session, &mut response, &tmp, pointer).await;
    let stored = match received {
        Ok(()) => store(path, &tmp, pointer).await,
        Err(e) => Err(e),
    };
    if stored.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    stored.map(|()| pointer.size)
}

/// Writes the body to `tmp`, refusing a byte beyond the pointer's size, and checks the
/// size and hash at its end.
async fn receive(
    session: &Session,
    response: &mut reqwest::Response,
    tmp: &PathBuf,
    pointer: &Pointer,
) -> Result<(), LfsError> {
    let disk = |e: std::io::Error| LfsError::Disk(e.to_string());
    let mut file = tokio::fs::File::create(tmp).await.map_err(disk)?;
    let mut hash = Sha256::new();
    let mut got: u64 = 0;
    loop {
        let chunk = bounded(session, response.chunk())
            .await
            .map_err(|_| LfsError::Stopped)?
            .map_err(|e| download_error(pointer, describe(&e)))?;
        let Some(chunk) = chunk else { break };
        got += chunk.len() as u64;
        if got > pointer.size {
            return Err(LfsError::SizeMismatch {
                oid: pointer.oid.clone(),
                expected: pointer.size,
                got,
            });
        }
        hash.update(&chunk);
        file.write_all(&chunk).await.map_err(disk)?;
    }
    if got != pointer.size {
        return Err(LfsError::SizeMismatch {
            oid: pointer.oid.clone(),
            expected: pointer.size,
            got,
        });
    }
    if hex::encode(hash.finalize()) != pointer.oid {
        return Err(LfsError::HashMismatch {
            oid: pointer.oid.clone(),
        });
    }
    file.sync_all().await.map_err(disk)?;
    Ok(())
}

async fn store(path: &Path, tmp: &Path, pointer: &Pointer) -> Result<(), LfsError> {
    let target = path.join(pointer.relative_path());
    let disk = |e: std::io::Error| LfsError::Disk(e.to_string());
    if let Some(dir) = target.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(disk)?;
    }
    tokio::fs::rename(tmp, &target).await.map_err(disk)
}

fn download_error(pointer: &Pointer, why: String) -> LfsError {
    LfsError::Download {
        oid: pointer.oid.clone(),
        why,
    }
}
