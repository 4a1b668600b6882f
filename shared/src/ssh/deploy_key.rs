//! Deploy keys: an Ed25519 pair generated for one mirror, or a private key its owner
//! uploads, checked before it is sealed.

use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey};
use zeroize::Zeroizing;

/// Why an uploaded private key is refused. No message repeats the key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SshKeyError {
    #[error("private_key is not an OpenSSH private key (`-----BEGIN OPENSSH PRIVATE KEY-----`)")]
    Unreadable,
    #[error(
        "private_key is protected by a passphrase: upload it without one (ssh-keygen -p -N '')"
    )]
    Encrypted,
    #[error("private_key type `{0}` is not supported (use ed25519, ecdsa or rsa)")]
    Unsupported(String),
    #[error("private_key is longer than 16384 bytes")]
    TooLong,
    #[error("the key could not be generated")]
    Generate,
}

/// Longer than any RSA key of 8192 bits in OpenSSH's format.
const MAX_KEY_LEN: usize = 16 * 1024;

/// A key pair for one mirror: the private half in OpenSSH's format (to be sealed at
/// once), the public half as an `authorized_keys` line, and its SHA-256 fingerprint.
pub struct DeployKey {
    pub private_openssh: Zeroizing<String>,
    pub public_openssh: String,
    /// `SHA256:…` as `ssh-keygen -lf` prints it.
    pub fingerprint: String,
}

impl std::fmt::Debug for DeployKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeployKey")
            .field("public_openssh", &self.public_openssh)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// The comment a mirror's key carries, so that a forge's deploy key list names it.
pub fn comment_for(owner: &str, name: &str) -> String {
    format!("stasis-mirror-{owner}/{name}")
}

impl DeployKey {
    /// A fresh Ed25519 pair from the system's random source.
    pub fn generate(comment: &str) -> Result<Self, SshKeyError> {
        let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
            .map_err(|_| SshKeyError::Generate)?;
        key.set_comment(comment);
        Self::from_key(&key)
    }

    /// An owner's own private key: OpenSSH's format, no passphrase (the worker has no
    /// one to type it), a type libssh2 signs with. Its comment becomes `comment`.
    pub fn from_upload(text: &str, comment: &str) -> Result<Self, SshKeyError> {
        if text.len() > MAX_KEY_LEN {
            return Err(SshKeyError::TooLong);
        }
        let mut key = PrivateKey::from_openssh(text.trim()).map_err(|_| SshKeyError::Unreadable)?;
        if key.is_encrypted() {
            return Err(SshKeyError::Encrypted);
        }
        match key.algorithm() {
            Algorithm::Ed25519 | Algorithm::Ecdsa { .. } | Algorithm::Rsa { .. } => {}
            other => return Err(SshKeyError::Unsupported(other.as_str().to_owned())),
        }
        key.set_comment(comment);
        Self::from_key(&key)
    }

    fn from_key(key: &PrivateKey) -> Result<Self, SshKeyError> {
        let private_openssh = key
            .to_openssh(LineEnding::LF)
            .map_err(|_| SshKeyError::Unreadable)?;
        let public = key.public_key();
        let public_openssh = public.to_openssh().map_err(|_| SshKeyError::Unreadable)?;
        Ok(Self {
            private_openssh,
            public_openssh,
            fingerprint: public.fingerprint(HashAlg::Sha256).to_string(),
        })
    }
}

/// The fingerprint of a public key line (`ssh-ed25519 AAAA… comment`).
pub fn public_fingerprint(line: &str) -> Option<String> {
    let key = ssh_key::PublicKey::from_openssh(line.trim()).ok()?;
    Some(key.fingerprint(HashAlg::Sha256).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_is_ed25519_with_the_mirrors_comment() {
        let key = DeployKey::generate("stasis-mirror-alice/tools").unwrap();
        assert!(key.public_openssh.starts_with("ssh-ed25519 AAAA"));
        assert!(key.public_openssh.ends_with(" stasis-mirror-alice/tools"));
        assert!(key
            .private_openssh
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
        assert!(key.fingerprint.starts_with("SHA256:") && key.fingerprint.len() == 50);
        assert_eq!(
            public_fingerprint(&key.public_openssh),
            Some(key.fingerprint.clone())
        );
        let again = DeployKey::from_upload(&key.private_openssh, "x").unwrap();
        assert_eq!(again.fingerprint, key.fingerprint);
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }

    #[test]
    fn uploads_that_are_not_usable_keys_are_refused() {
        assert_eq!(
            DeployKey::from_upload("hello", "x").unwrap_err(),
            SshKeyError::Unreadable
        );
        // a key with a passphrase, as ssh-keygen writes it
        let dir = std::env::temp_dir().join(format!("stasis-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("locked");
        let made = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "pass", "-C", "", "-f"])
            .arg(&file)
            .status()
            .unwrap();
        assert!(made.success());
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            DeployKey::from_upload(&text, "x").unwrap_err(),
            SshKeyError::Encrypted
        );
    }
}
