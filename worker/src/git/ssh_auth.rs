//! What an ssh fetch proves and checks: the mirror's deploy key, offered once, and the
//! upstream's host key, compared with the ones its owner confirmed before anything is
//! fetched. libgit2 (through libssh2) runs the ssh session; these are its callbacks.

use std::cell::Cell;

use git2::cert::Cert;
use git2::{CertificateCheckStatus, Cred, CredentialType, ErrorClass, ErrorCode};
use stasis_shared::domain::ErrorKind;
use stasis_shared::ssh::host_keys::fingerprint_of_hash;

use super::transport::Session;

/// The ssh side of one fetch.
#[derive(Default, Clone)]
pub struct SshAccess {
    /// The deploy key: its public line and private half (OpenSSH format), opened from
    /// its seal for this fetch only.
    pub key: Option<DeployKeyPair>,
    /// Fingerprints (`SHA256:…`) of the host keys the owner confirmed for this
    /// upstream; empty: none confirmed, and an ssh fetch is refused.
    pub host_keys: Vec<String>,
}

#[derive(Clone)]
pub struct DeployKeyPair {
    pub public: String,
    pub private: zeroize::Zeroizing<String>,
    pub fingerprint: String,
}

impl std::fmt::Debug for SshAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshAccess")
            .field("key", &self.key.as_ref().map(|k| &k.fingerprint))
            .field("host_keys", &self.host_keys)
            .finish()
    }
}

fn refusal(message: &str) -> git2::Error {
    git2::Error::new(ErrorCode::Auth, ErrorClass::Ssh, message)
}

/// The answer to libgit2's ssh credential request: the user name of the URL (`git`
/// when it names none), then the deploy key, once. libgit2 asks again after the
/// upstream refused an answer; the second request ends the fetch as `auth`.
pub(super) fn credentials(
    access: &SshAccess,
    session: &Session,
    tries: &Cell<u32>,
    user: Option<&str>,
    allowed: CredentialType,
) -> Result<Cred, git2::Error> {
    let user = user.filter(|u| !u.is_empty()).unwrap_or("git");
    if allowed.contains(CredentialType::USERNAME) {
        return Cred::username(user);
    }
    tries.set(tries.get() + 1);
    let message = match &access.key {
        None => "the upstream asks for an ssh key and this mirror has none: generate a deploy \
                 key and add its public key to the upstream"
            .to_owned(),
        Some(key) if tries.get() == 1 && allowed.contains(CredentialType::SSH_MEMORY) => {
            return Cred::ssh_key_from_memory(user, Some(&key.public), &key.private, None);
        }
        Some(key) if tries.get() == 1 => format!(
            "the upstream does not accept public keys for user `{user}` (deploy key {})",
            key.fingerprint
        ),
        Some(key) => format!(
            "the upstream refused the deploy key {} for user `{user}`: add its public key to \
             the upstream as a deploy key, or check the user in the URL",
            key.fingerprint
        ),
    };
    let _ = session.fail(ErrorKind::Auth, message.clone());
    Err(refusal(&message))
}

/// libgit2's certificate check for an ssh upstream: the host key it shows must be one
/// the owner confirmed, or the fetch ends before a single ref is read.
pub(super) fn check_host_key(
    access: &SshAccess,
    session: &Session,
    cert: &Cert<'_>,
) -> Result<CertificateCheckStatus, git2::Error> {
    let Some(hostkey) = cert.as_hostkey() else {
        return Ok(CertificateCheckStatus::CertificatePassthrough);
    };
    let message = match hostkey.hash_sha256() {
        None => "the upstream's ssh host key could not be read".to_owned(),
        Some(hash) => match host_key_refusal(&fingerprint_of_hash(hash), &access.host_keys) {
            None => return Ok(CertificateCheckStatus::CertificateOk),
            Some(message) => message,
        },
    };
    let _ = session.fail(ErrorKind::HostKeyMismatch, message.clone());
    Err(git2::Error::new(
        ErrorCode::Certificate,
        ErrorClass::Ssh,
        message,
    ))
}

/// Why the host key `shown` (a `SHA256:` fingerprint) is not accepted, or `None` when it
/// is one of the `confirmed` ones: the one rule for the fetch and for LFS's ssh session.
pub(crate) fn host_key_refusal(shown: &str, confirmed: &[String]) -> Option<String> {
    if confirmed.iter().any(|c| c == shown) {
        return None;
    }
    Some(if confirmed.is_empty() {
        format!(
            "the upstream's ssh host key {shown} is not confirmed: detect and confirm this \
             mirror's host keys before it syncs over ssh"
        )
    } else {
        format!(
            "the upstream's ssh host key is {shown}, not the confirmed {}: nothing was \
             fetched; confirm the new key only if the upstream's owner changed it",
            confirmed.join(", ")
        )
    })
}
