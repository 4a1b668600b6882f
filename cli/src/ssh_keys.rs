//! `stasisctl mirror deploy-key` and `stasisctl mirror host-keys`: a mirror's ssh
//! access as the API manages it, for operators: the deploy key (only its public half
//! is printed) and the upstream host keys its syncs accept.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::Subcommand;
use stasis_shared::db::repos::{self, Repo};
use stasis_shared::db::ssh_keys;
use stasis_shared::domain::names::split_repo;
use stasis_shared::git::url::{vetted_addrs, Scheme, UpstreamUrl};
use stasis_shared::ssh::deploy_key::{comment_for, public_fingerprint};
use stasis_shared::ssh::host_keys::{detect, host_key_from_line, host_port, normalize_fingerprint};
use stasis_shared::ssh::{DeployKey, HostKey};

use crate::{out, Services};

#[derive(Subcommand)]
pub enum DeployKeyCommand {
    /// Print the public key of OWNER/NAME's deploy key and its fingerprint.
    Show {
        /// The mirror, as OWNER/NAME.
        repo: String,
    },
    /// Generate a new Ed25519 deploy key for OWNER/NAME (the old one stops working
    /// here at once) and print its public key.
    Rotate {
        /// The mirror, as OWNER/NAME.
        repo: String,
    },
    /// Use an existing private key (OpenSSH format, no passphrase) as OWNER/NAME's
    /// deploy key; it is stored sealed.
    Set {
        /// The mirror, as OWNER/NAME.
        repo: String,
        /// The private key file.
        #[arg(long)]
        file: PathBuf,
    },
    /// Remove OWNER/NAME's deploy key.
    Remove {
        /// The mirror, as OWNER/NAME.
        repo: String,
    },
}

#[derive(Subcommand)]
pub enum HostKeysCommand {
    /// The host keys OWNER/NAME's ssh syncs accept.
    Show {
        /// The mirror, as OWNER/NAME.
        repo: String,
    },
    /// The host keys OWNER/NAME's ssh upstream offers now, by fingerprint (the address
    /// policy applies, as for syncs).
    Detect {
        /// The mirror, as OWNER/NAME.
        repo: String,
    },
    /// Accept these host keys (fingerprints `SHA256:…` or public key lines) for
    /// OWNER/NAME's upstream, in place of any accepted before; none: accept none.
    Confirm {
        /// The mirror, as OWNER/NAME.
        repo: String,
        /// Fingerprints or public key lines, as detect or `ssh-keyscan` print them.
        keys: Vec<String>,
    },
}

async fn find(svc: &Services, full: &str) -> anyhow::Result<Repo> {
    let (owner, name) = split_repo(full)?;
    repos::find_by_name(&svc.pool, &owner, &name)
        .await?
        .filter(|r| r.is_mirror)
        .ok_or_else(|| anyhow!("no mirror {full}"))
}

fn print_key(public: &str) {
    out!("{public}");
    out!(
        "fingerprint: {}",
        public_fingerprint(public).unwrap_or_default()
    );
}

pub async fn deploy_key(svc: &Services, command: DeployKeyCommand) -> anyhow::Result<()> {
    let (full, key) = match command {
        DeployKeyCommand::Show { repo } => {
            let found = find(svc, &repo).await?;
            match &found.ssh_public_key {
                Some(public) => print_key(public),
                None => bail!("{repo} has no deploy key (`stasisctl mirror deploy-key rotate {repo}` makes one)"),
            }
            return Ok(());
        }
        DeployKeyCommand::Remove { repo } => (repo, None),
        DeployKeyCommand::Rotate { repo } => {
            let (owner, name) = split_repo(&repo)?;
            let key = DeployKey::generate(&comment_for(&owner, &name))?;
            (repo, Some(key))
        }
        DeployKeyCommand::Set { repo, file } => {
            let (owner, name) = split_repo(&repo)?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let key = DeployKey::from_upload(&text, &comment_for(&owner, &name))?;
            (repo, Some(key))
        }
    };
    let found = find(svc, &full).await?;
    let Some(key) = key else {
        ssh_keys::set_deploy_key(&svc.pool, found.id, None).await?;
        out!("{full} has no deploy key now");
        return Ok(());
    };
    let cipher = svc.cfg.secrets.cipher()?.ok_or_else(|| {
        anyhow!("this deployment cannot store deploy keys (no secrets.key is configured)")
    })?;
    let sealed = cipher.seal(&key.private_openssh);
    ssh_keys::set_deploy_key(&svc.pool, found.id, Some((&sealed, &key.public_openssh))).await?;
    out!("{full} now authenticates with this key; add it upstream as a read-only deploy key:");
    print_key(&key.public_openssh);
    Ok(())
}

fn ssh_url(repo: &Repo, full: &str) -> anyhow::Result<UpstreamUrl> {
    repo.mirror_url
        .as_deref()
        .and_then(|u| UpstreamUrl::parse(u).ok())
        .filter(|u| u.scheme() == Scheme::Ssh)
        .ok_or_else(|| anyhow!("{full} does not mirror an ssh upstream"))
}

fn print_host_keys(keys: &[HostKey]) {
    for key in keys {
        out!(
            "{}  {}",
            key.key_type.as_deref().unwrap_or("-"),
            key.fingerprint
        );
    }
}

pub async fn host_keys(svc: &Services, command: HostKeysCommand) -> anyhow::Result<()> {
    match command {
        HostKeysCommand::Show { repo } => {
            let found = find(svc, &repo).await?;
            match &found.ssh_host_keys_for {
                Some(host) => out!("accepted for {host}:"),
                None => out!("no host key accepted: ssh syncs of {repo} refuse to run"),
            }
            print_host_keys(&found.ssh_host_keys);
        }
        HostKeysCommand::Detect { repo } => {
            let found = find(svc, &repo).await?;
            let url = ssh_url(&found, &repo)?;
            let mirror = &svc.cfg.mirror;
            let addrs = vetted_addrs(&url, mirror.allow_local_network, mirror.dns_server)
                .await
                .map_err(|e| anyhow!("{e}"))?;
            let addr = addrs[0];
            let keys = tokio::task::spawn_blocking(move || detect(addr, Duration::from_secs(10)))
                .await??;
            out!("{} ({addr}) offers:", host_port(&url));
            print_host_keys(&keys);
        }
        HostKeysCommand::Confirm { repo, keys } => {
            let found = find(svc, &repo).await?;
            let url = ssh_url(&found, &repo)?;
            let mut accepted: Vec<HostKey> = Vec::new();
            for text in &keys {
                let key = if text.trim_start().starts_with("SHA256:") {
                    HostKey {
                        key_type: None,
                        fingerprint: normalize_fingerprint(text)?,
                    }
                } else {
                    host_key_from_line(text)?
                };
                if !accepted.iter().any(|k| k.fingerprint == key.fingerprint) {
                    accepted.push(key);
                }
            }
            let host = host_port(&url);
            ssh_keys::set_host_keys(&svc.pool, found.id, &accepted, &host).await?;
            if accepted.is_empty() {
                out!("no host key accepted for {repo}: its ssh syncs refuse to run");
            } else {
                out!("accepted for {host}:");
                print_host_keys(&accepted);
            }
        }
    }
    Ok(())
}
