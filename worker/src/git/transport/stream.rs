//! A TCP connection under a fetch session: every read and write looks at the stop flag
//! and the deadline between slices, and every byte read is metered.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;

use super::meter::{Meter, Phase};
use super::session::Session;
use stasis_shared::domain::ErrorKind;

pub(super) struct SessionStream {
    tcp: TcpStream,
    session: Arc<Session>,
    meter: Meter,
}

impl SessionStream {
    pub(super) fn new(tcp: TcpStream, session: Arc<Session>, phase: Phase) -> Self {
        let meter = Meter::new(session.clone(), phase);
        Self {
            tcp,
            session,
            meter,
        }
    }

    fn network(&self, e: io::Error) -> io::Error {
        self.session.fail(
            ErrorKind::Network,
            format!("upstream connection failed: {e}"),
        )
    }
}

fn is_slice_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Read for SessionStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            self.session.interrupted()?;
            match self.tcp.read(buf) {
                Ok(n) => {
                    self.meter.read(&buf[..n])?;
                    return Ok(n);
                }
                Err(e) if is_slice_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.network(e)),
            }
        }
    }
}

impl Write for SessionStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.meter.wrote();
        loop {
            self.session.interrupted()?;
            match self.tcp.write(buf) {
                Ok(n) => return Ok(n),
                Err(e) if is_slice_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.network(e)),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

impl Drop for SessionStream {
    fn drop(&mut self) {
        // tell the upstream at once, rather than when the descriptor is reclaimed
        let _ = self.tcp.shutdown(Shutdown::Both);
    }
}
