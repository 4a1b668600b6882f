//! An upstream's ssh host keys: listed by fingerprint for its owner to confirm, then
//! pinned per mirror; a sync whose upstream shows another key fetches nothing.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One host key as shown and pinned: its type and OpenSSH's SHA-256 fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HostKey {
    /// `ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`…; `null` when the owner pinned a
    /// bare fingerprint.
    pub key_type: Option<String>,
    /// `SHA256:` and the unpadded base64 of the key's SHA-256, as `ssh-keygen -lf`
    /// prints it.
    #[schema(example = "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s")]
    pub fingerprint: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HostKeyError {
    #[error("could not connect to {0}: {1}")]
    Connect(SocketAddr, String),
    #[error("the upstream at {0} did not complete an ssh handshake: {1}")]
    Handshake(SocketAddr, String),
    #[error("`{0}` is not a SHA256 fingerprint like SHA256:uNiVztk…")]
    BadFingerprint(String),
    #[error("`{0}…` is not an ssh public key like `ssh-ed25519 AAAA…`")]
    BadKey(String),
}

/// OpenSSH's fingerprint of a key blob (the key as the ssh wire format encodes it).
pub fn fingerprint_of_blob(blob: &[u8]) -> String {
    fingerprint_of_hash(&Sha256::digest(blob))
}

/// OpenSSH's fingerprint from the SHA-256 of a key blob (libgit2 hands over the hash).
pub fn fingerprint_of_hash(hash: &[u8]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(hash))
}

/// A fingerprint as an owner typed it, in its one form: `SHA256:` and 43 base64
/// characters (padding dropped) that decode to 32 bytes.
pub fn normalize_fingerprint(text: &str) -> Result<String, HostKeyError> {
    let bad = || HostKeyError::BadFingerprint(text.chars().take(80).collect());
    let body = text.trim().strip_prefix("SHA256:").ok_or_else(bad)?;
    let body = body.trim_end_matches('=');
    let bytes = STANDARD_NO_PAD.decode(body).map_err(|_| bad())?;
    if bytes.len() != 32 {
        return Err(bad());
    }
    Ok(fingerprint_of_hash(&bytes))
}

/// A host key given as a public key line (`ssh-ed25519 AAAA…`, as `known_hosts` and
/// `ssh-keyscan` write it, a leading host name allowed).
pub fn host_key_from_line(line: &str) -> Result<HostKey, HostKeyError> {
    let bad = || HostKeyError::BadKey(line.chars().take(40).collect());
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| w.starts_with("ssh-") || w.starts_with("ecdsa-"))
        .ok_or_else(bad)?;
    let blob = words.get(at + 1).ok_or_else(bad)?;
    let key =
        ssh_key::PublicKey::from_openssh(&format!("{} {blob}", words[at])).map_err(|_| bad())?;
    Ok(HostKey {
        key_type: Some(key.algorithm().as_str().to_owned()),
        fingerprint: key.fingerprint(ssh_key::HashAlg::Sha256).to_string(),
    })
}

/// `host:port` of an ssh upstream (port 22 unless it names one): what host keys are
/// confirmed for, so that keys of one server never vouch for another.
pub fn host_port(url: &crate::git::url::UpstreamUrl) -> String {
    let host = url.host().map_or_else(String::new, ToString::to_string);
    format!("{host}:{}", url.port().unwrap_or(22))
}

/// The key type a blob names (its first ssh string).
fn blob_type(blob: &[u8]) -> Option<String> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    let name = blob.get(4..4 + len)?;
    std::str::from_utf8(name).ok().map(str::to_owned)
}

/// The host-key algorithms asked for, one handshake each: a server offers one key per
/// handshake, the first of the client's list it holds.
const FAMILIES: [&str; 3] = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521",
    "rsa-sha2-512,rsa-sha2-256,ssh-rsa",
];

/// Every host key the ssh server at `addr` offers (ed25519, ecdsa, rsa), by handshakes
/// to that address alone: the caller resolved the host and checked the address under
/// the upstream policy. Blocking; each handshake gives up after `timeout`.
pub fn detect(addr: SocketAddr, timeout: Duration) -> Result<Vec<HostKey>, HostKeyError> {
    let mut keys = Vec::new();
    let mut last = None;
    for family in FAMILIES {
        match offered(addr, family, timeout) {
            Ok(Some(key)) if !keys.contains(&key) => keys.push(key),
            Ok(_) => {}
            Err(e @ HostKeyError::Connect(..)) => return Err(e),
            // a server without a key of this family ends the handshake
            Err(e) => last = Some(e),
        }
    }
    match (keys.is_empty(), last) {
        (true, Some(e)) => Err(e),
        _ => Ok(keys),
    }
}

fn offered(
    addr: SocketAddr,
    family: &str,
    timeout: Duration,
) -> Result<Option<HostKey>, HostKeyError> {
    let tcp = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| HostKeyError::Connect(addr, e.to_string()))?;
    let _ = tcp.set_read_timeout(Some(timeout));
    let _ = tcp.set_write_timeout(Some(timeout));
    let handshake = |e: ssh2::Error| HostKeyError::Handshake(addr, e.message().to_owned());
    let mut session = ssh2::Session::new().map_err(handshake)?;
    session.set_timeout(timeout.as_millis().min(u32::MAX as u128) as u32);
    if session
        .method_pref(ssh2::MethodType::HostKey, family)
        .is_err()
    {
        // this libssh2 cannot check keys of the family: nothing to list
        return Ok(None);
    }
    session.set_tcp_stream(tcp);
    session.handshake().map_err(handshake)?;
    let key = session.host_key().map(|(blob, _)| HostKey {
        key_type: blob_type(blob),
        fingerprint: fingerprint_of_blob(blob),
    });
    let _ = session.disconnect(None, "host keys listed", None);
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_written_as_openssh_writes_them() {
        let fp = fingerprint_of_hash(&[0u8; 32]);
        assert_eq!(fp, "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(normalize_fingerprint(&format!(" {fp}= ")).unwrap(), fp);
        assert!(normalize_fingerprint("SHA256:abc").is_err());
        assert!(normalize_fingerprint("MD5:aa:bb").is_err());
        let blob = [
            0, 0, 0, 11, b's', b's', b'h', b'-', b'e', b'd', b'2', b'5', b'5', b'1', b'9',
        ];
        assert_eq!(blob_type(&blob).as_deref(), Some("ssh-ed25519"));
    }
}
