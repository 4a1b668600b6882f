//! `git://`: one TCP connection to the address the policy approved, carrying the
//! request line libgit2's own transport would send, then the smart protocol.

use std::io::Write;
use std::sync::Arc;

use git2::transport::{Service, SmartSubtransport, SmartSubtransportStream};

use super::meter::Phase;
use super::requested;
use super::session::Session;
use super::stream::SessionStream;

/// Stateful: libgit2 reuses the listing's stream for the download.
pub(super) struct GitProto {
    pub(super) session: Arc<Session>,
}

impl SmartSubtransport for GitProto {
    fn action(
        &self,
        url: &str,
        action: Service,
    ) -> Result<Box<dyn SmartSubtransportStream>, git2::Error> {
        let parsed = requested(&self.session, url, action)?;
        let host = parsed.host_str().unwrap_or_default().to_owned();
        let port = parsed.port().unwrap_or(9418);
        let path = percent_encoding::percent_decode_str(parsed.path()).decode_utf8_lossy();
        let tcp = self
            .session
            .connect(&host, port)
            .map_err(|e| stream_error(&self.session, e))?;
        let mut stream = SessionStream::new(tcp, self.session.clone(), Phase::Advertisement);
        // what git's own client sends: `git-upload-pack <path>\0host=<host>\0`
        let body = format!("git-upload-pack {path}\0host={host}\0");
        let line = format!("{:04x}{body}", body.len() + 4);
        stream
            .write_all(line.as_bytes())
            .map_err(|e| stream_error(&self.session, e))?;
        Ok(Box::new(stream))
    }

    fn close(&self) -> Result<(), git2::Error> {
        Ok(())
    }
}

fn stream_error(session: &Session, e: std::io::Error) -> git2::Error {
    let message = session
        .failure()
        .map_or_else(|| e.to_string(), |f| f.message);
    git2::Error::new(
        git2::ErrorCode::GenericError,
        git2::ErrorClass::Net,
        message,
    )
}
