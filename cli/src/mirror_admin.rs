//! `stasisctl mirror pause|resume|rename|delete|set-url`: what a mirror's owner does through
//! the API, for operators, with the API's checks.
//!
//! `delete` follows the API's DELETE /repos/{owner}/{repo} step by step from the same
//! shared pieces (sync lease, delivery removal, `mirror_path`, `repos::delete`); the
//! sequence itself still lives in the API handler too.

use anyhow::{anyhow, bail, Context};
use stasis_shared::db::repos::{self, MirrorSettings, Repo};
use stasis_shared::domain::names::{check_repo_name, split_repo};
use stasis_shared::git::url::{check_upstream, redact_url};
use stasis_shared::removal::{remove_mirror, Removal};
use stasis_shared::rename::{rename_mirror, Rename};

use crate::{out, Services};

async fn find(svc: &Services, full: &str, mirror_only: bool) -> anyhow::Result<Repo> {
    let (owner, name) = split_repo(full)?;
    repos::find_by_name(&svc.pool, &owner, &name)
        .await?
        .filter(|r| r.is_mirror || !mirror_only)
        .ok_or_else(|| {
            anyhow!(
                "no {} {full}",
                if mirror_only { "mirror" } else { "repository" }
            )
        })
}

pub async fn set_enabled(svc: &Services, full: &str, enabled: bool) -> anyhow::Result<()> {
    let repo = find(svc, full, true).await?;
    let settings = MirrorSettings {
        enabled: Some(enabled),
        ..MirrorSettings::default()
    };
    repos::update_mirror(&svc.pool, repo.id, &settings, svc.cfg.mirror.sync_interval).await?;
    if enabled {
        out!("scheduled syncs of {full} resumed");
    } else {
        out!("scheduled syncs of {full} paused (manual syncs still run)");
    }
    Ok(())
}

pub async fn delete(svc: &Services, full: &str) -> anyhow::Result<()> {
    let repo = find(svc, full, false).await?;
    let jobs = svc.jobs().await?;
    let removal = remove_mirror(&svc.cfg, &svc.pool, svc.redis().await?, &jobs, &repo)
        .await
        .context("removing the mirror")?;
    if removal == Removal::SyncRunning {
        bail!("a sync of {full} is running; retry when it ends");
    }
    out!("{full} deleted");
    Ok(())
}

pub async fn rename(svc: &Services, full: &str, new_name: &str) -> anyhow::Result<()> {
    check_repo_name(new_name).map_err(|msg| anyhow!("{msg}"))?;
    let repo = find(svc, full, false).await?;
    let renamed = rename_mirror(&svc.cfg, &svc.pool, svc.redis().await?, &repo, new_name)
        .await
        .context("renaming the repository")?;
    let owner = &repo.owner;
    match renamed {
        Rename::Renamed => out!("{full} renamed to {owner}/{new_name}"),
        Rename::NameTaken => bail!("{owner}/{new_name} already exists"),
        Rename::PathOccupied => {
            bail!("mirror storage already holds a directory for {owner}/{new_name}")
        }
        Rename::SyncRunning => bail!("a sync of {full} is running; retry when it ends"),
        Rename::Moving => bail!("{full} is moving to another storage; retry once it has moved"),
    }
    Ok(())
}

pub async fn set_url(svc: &Services, full: &str, raw: &str) -> anyhow::Result<()> {
    let repo = find(svc, full, true).await?;
    let mirror = &svc.cfg.mirror;
    // The error may quote the URL; it is redacted before it is shown.
    let checked = check_upstream(raw, mirror.allow_local_network, mirror.dns_server)
        .await
        .map_err(|e| anyhow!("{}", e).context(format!("refused {}", redact_url(raw))))?;
    let (clean, userinfo) = checked.split_credentials();
    let sealed = match (userinfo, svc.cfg.secrets.cipher()?) {
        (None, _) => None,
        (Some(userinfo), Some(cipher)) => Some(cipher.seal(&userinfo)),
        (Some(_), None) => bail!(
            "this deployment cannot store credentials (no secrets.key is configured); use a public URL"
        ),
    };
    let settings = MirrorSettings {
        upstream: Some(clean.as_str().to_owned()),
        credentials: Some(sealed),
        ..MirrorSettings::default()
    };
    repos::update_mirror(&svc.pool, repo.id, &settings, svc.cfg.mirror.sync_interval).await?;
    out!("{full} now mirrors {}; due now", clean.as_str());
    Ok(())
}

/// Sets (from a file, or `-` for stdin: never a command-line argument, which other users
/// may list) or removes the credentials of OWNER/NAME's upstream, sealed as the API
/// seals them; the mirror is due at once.
pub async fn set_credentials(
    svc: &Services,
    full: &str,
    username: Option<&str>,
    secret_file: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let repo = find(svc, full, true).await?;
    let sealed = match (username, secret_file) {
        (Some(username), Some(file)) => {
            let secret = read_secret(file)?;
            let url = repo.mirror_url.as_deref().unwrap_or_default();
            let url = stasis_shared::git::url::UpstreamUrl::parse(url)
                .map_err(|e| anyhow!("the stored upstream is not usable: {e}"))?;
            let userinfo = stasis_shared::git::url::field_credentials(&url, username, &secret)
                .map_err(|why| anyhow!("{why}"))?;
            let Some(cipher) = svc.cfg.secrets.cipher()? else {
                bail!("this deployment cannot store credentials (no secrets.key is configured)");
            };
            Some(cipher.seal(&userinfo))
        }
        (None, None) => None,
        _ => bail!("give --username with --secret-file, or --remove"),
    };
    let removed = sealed.is_none();
    let settings = MirrorSettings {
        credentials: Some(sealed),
        ..MirrorSettings::default()
    };
    repos::update_mirror(&svc.pool, repo.id, &settings, svc.cfg.mirror.sync_interval).await?;
    if removed {
        out!("credentials of {full} removed; due now");
    } else {
        out!("credentials of {full} stored sealed; due now");
    }
    Ok(())
}

/// A password or token from a file or stdin (`-`), without its trailing newline.
fn read_secret(file: &std::path::Path) -> anyhow::Result<String> {
    let mut text = String::new();
    if file == std::path::Path::new("-") {
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("reading the secret from stdin")?;
    } else {
        text = std::fs::read_to_string(file)
            .with_context(|| format!("reading the secret from {}", file.display()))?;
    }
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}
