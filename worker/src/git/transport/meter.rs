//! Counts what an upstream sends: every byte against the fetch's transfer limit, and the
//! ref advertisement (which libgit2 holds in memory whole) against its own limits.

use std::io;
use std::sync::Arc;

use super::session::Session;
use stasis_shared::domain::ErrorKind;

/// Where a stream is in the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Everything read until the client next writes is the ref advertisement.
    Advertisement,
    Transfer,
}

#[derive(Debug)]
pub(super) struct Meter {
    session: Arc<Session>,
    phase: Phase,
    advertised_bytes: u64,
    pkt: PktLines,
}

impl Meter {
    pub(super) fn new(session: Arc<Session>, phase: Phase) -> Self {
        Self {
            session,
            phase,
            advertised_bytes: 0,
            pkt: PktLines::default(),
        }
    }

    pub(super) fn read(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.session.count(bytes.len())?;
        if self.phase != Phase::Advertisement {
            return Ok(());
        }
        self.advertised_bytes += bytes.len() as u64;
        self.pkt.feed(bytes);
        let policy = &self.session.policy;
        if self.advertised_bytes > policy.max_advertisement_size {
            return Err(self.session.fail(
                ErrorKind::TooLarge,
                format!(
                    "upstream's ref advertisement is larger than sync.max_advertisement_size ({})",
                    bytesize::ByteSize(policy.max_advertisement_size)
                ),
            ));
        }
        if self.pkt.lines > u64::from(policy.max_advertised_refs) + 2 {
            return Err(self.session.fail(
                ErrorKind::TooLarge,
                format!(
                    "upstream advertises more than sync.max_advertised_refs ({}) refs",
                    policy.max_advertised_refs
                ),
            ));
        }
        Ok(())
    }

    /// The client speaks: the advertisement, if any, is over.
    pub(super) fn wrote(&mut self) {
        if self.advertised_bytes > 0 {
            self.phase = Phase::Transfer;
        }
    }
}

/// Counts pkt-lines (`4 hex digits of length` + payload) across reads of any size.
#[derive(Debug, Default)]
struct PktLines {
    header: Vec<u8>,
    skip: usize,
    lines: u64,
}

impl PktLines {
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let want = 4 - self.header.len();
            let n = want.min(bytes.len());
            self.header.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.header.len() < 4 {
                return;
            }
            let len = std::str::from_utf8(&self.header)
                .ok()
                .and_then(|h| usize::from_str_radix(h, 16).ok());
            self.header.clear();
            match len {
                // flush, delimiter and response-end packets carry nothing
                Some(0..=3) => {}
                Some(len) => {
                    self.lines += 1;
                    self.skip = len - 4;
                }
                // not pkt-lines: counted as one line per header so limits still bite
                None => self.lines += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkt_lines_are_counted_across_reads_of_any_size() {
        let stream = b"0009abcde0000000cref-one\n0006x\n0000";
        for size in 1..stream.len() {
            let mut pkt = PktLines::default();
            stream.chunks(size).for_each(|c| pkt.feed(c));
            assert_eq!(pkt.lines, 3, "chunks of {size}");
        }
    }
}
