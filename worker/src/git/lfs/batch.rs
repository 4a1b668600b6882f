//! The LFS batch API (`docs/api/batch.md` in git-lfs): one POST per hundred objects
//! asking to download them with the `basic` transfer, answered with an href (and
//! headers) per object, or an error per object.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use url::Url;

use super::endpoint::Endpoint;
use super::pointer::Pointer;
use super::{read_capped, LfsError};
use crate::git::transport::{bounded, describe, vet_url, Session};

pub const MEDIA_TYPE: &str = "application/vnd.git-lfs+json";
/// Objects per request, as git-lfs asks (`lfs.transfer.batchSize`'s default).
pub const BATCH_SIZE: usize = 100;
/// A batch answer lists a hundred objects with an href and a few headers each.
const MAX_ANSWER: u64 = 4 << 20;

#[derive(Serialize)]
struct Request<'a> {
    operation: &'static str,
    transfers: [&'static str; 1],
    objects: Vec<Object<'a>>,
}

#[derive(Serialize)]
struct Object<'a> {
    oid: &'a str,
    size: u64,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    transfer: Option<String>,
    objects: Vec<AnsweredObject>,
}

#[derive(Deserialize)]
struct AnsweredObject {
    oid: String,
    #[serde(default)]
    actions: Option<Actions>,
    #[serde(default)]
    error: Option<ObjectError>,
}

#[derive(Deserialize)]
struct Actions {
    download: Option<Action>,
}

#[derive(Deserialize)]
pub struct Action {
    pub href: String,
    #[serde(default)]
    pub header: HashMap<String, String>,
}

#[derive(Deserialize)]
struct ObjectError {
    code: u16,
    message: String,
}

/// Where to download each of `objects` from, or why not: in the order asked.
pub async fn download_actions(
    client: &reqwest::Client,
    session: &Session,
    endpoint: &Endpoint,
    objects: &[Pointer],
) -> Result<Vec<(Pointer, Result<Action, LfsError>)>, LfsError> {
    let url = endpoint.batch_url();
    check(session, &url)?;
    let body = Request {
        operation: "download",
        transfers: ["basic"],
        objects: objects
            .iter()
            .map(|p| Object {
                oid: &p.oid,
                size: p.size,
            })
            .collect(),
    };
    let mut request = client
        .post(url)
        // what `git-lfs-authenticate` answered for an ssh upstream (its Authorization)
        .headers(endpoint.header.clone())
        .header(reqwest::header::ACCEPT, MEDIA_TYPE)
        .header(reqwest::header::CONTENT_TYPE, MEDIA_TYPE)
        .body(serde_json::to_vec(&body).map_err(|e| LfsError::Batch(e.to_string()))?);
    // the endpoint is on the clone URL's host: the only one its credentials go to
    if let Some((user, pass)) = &endpoint.credentials {
        request = request.basic_auth(user, Some(pass));
    }
    let response = bounded(session, request.send())
        .await
        .map_err(|_| LfsError::Stopped)?
        .map_err(|e| LfsError::Batch(describe(&e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(LfsError::Batch(format!(
            "the upstream answered HTTP {}",
            status.as_u16()
        )));
    }
    let bytes = read_capped(session, response, MAX_ANSWER).await?;
    let answer: Answer = serde_json::from_slice(&bytes)
        .map_err(|e| LfsError::Batch(format!("not a batch answer: {e}")))?;
    if answer.transfer.as_deref().is_some_and(|t| t != "basic") {
        return Err(LfsError::Batch(
            "the upstream chose a transfer other than basic".into(),
        ));
    }
    let mut answered: HashMap<String, AnsweredObject> = answer
        .objects
        .into_iter()
        .map(|o| (o.oid.clone(), o))
        .collect();
    Ok(objects
        .iter()
        .map(|p| {
            let action = match answered.remove(&p.oid) {
                None => Err(LfsError::Batch(format!(
                    "object {} not in the answer",
                    p.oid
                ))),
                Some(AnsweredObject { error: Some(e), .. }) => Err(LfsError::Batch(format!(
                    "object {}: {} ({})",
                    p.oid,
                    e.message.chars().take(200).collect::<String>(),
                    e.code
                ))),
                Some(AnsweredObject {
                    actions:
                        Some(Actions {
                            download: Some(action),
                        }),
                    ..
                }) => Ok(action),
                Some(_) => Err(LfsError::Batch(format!(
                    "object {}: no download action",
                    p.oid
                ))),
            };
            (p.clone(), action)
        })
        .collect())
}

/// A URL passes the upstream address policy before any request is made to it.
pub fn check(session: &Session, url: &Url) -> Result<(), LfsError> {
    vet_url(session, url).map_err(|e| LfsError::Blocked(e.to_string()))
}
