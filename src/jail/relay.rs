//! Relaying a live interpreter's own output pipes into an exec's pipes.
//!
//! A node interpreter cannot take over the exec's pipes (no dup2 in node), so
//! it keeps writing to pipes of the holder for its whole life; the worker of
//! each exec borrows their read ends and copies what arrives into the pipes
//! of its caller until the driver has replied. Node writes to pipes
//! synchronously, so by then everything the code printed is in the pipes and
//! [`Relay::finish`] only has to empty them without waiting.

use nix::errno::Errno;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// At most this much is copied from one pipe per wakeup, so that code that
/// prints without pause cannot keep the worker from its deadline.
const MAX_PER_PUMP: usize = 1 << 20;
/// What [`Relay::finish`] copies at most per pipe: output that keeps coming
/// after the reply (a timer printing in a loop) belongs to no exec.
const MAX_AT_FINISH: usize = 4 << 20;

/// One source pipe (non-blocking read end) and the exec's pipe it feeds.
struct Pair {
    source: Option<OwnedFd>,
    /// `None` once writing failed (the caller is gone): the rest is dropped.
    sink: Option<OwnedFd>,
}

/// The copies of one exec; empty for interpreters that write to the exec's
/// pipes themselves (Python).
#[derive(Default)]
pub struct Relay {
    pairs: Vec<Pair>,
}

impl Relay {
    /// `sources`: read ends by stream (1 stdout, 2 stderr); `sinks`: the
    /// exec's stdout and stderr. A stream without a source (the interpreter
    /// closed it) ends at once.
    pub fn new(sources: Vec<(u8, OwnedFd)>, sinks: [OwnedFd; 2]) -> Relay {
        let mut pairs = Vec::new();
        for (stream, sink) in (1u8..).zip(sinks) {
            if let Some((_, source)) = sources.iter().find(|(s, _)| *s == stream) {
                if let Ok(source) = source.try_clone() {
                    pairs.push(Pair {
                        source: Some(source),
                        sink: Some(sink),
                    });
                }
            }
        }
        Relay { pairs }
    }

    /// The sources still open, in the order [`pump`](Self::pump) expects.
    pub fn sources(&self) -> Vec<BorrowedFd<'_>> {
        self.pairs
            .iter()
            .filter_map(|p| p.source.as_ref().map(|s| s.as_fd()))
            .collect()
    }

    /// Copies from the sources that poll found readable (`ready[i]` for the
    /// i-th of [`sources`](Self::sources), unchanged since).
    pub fn pump(&mut self, ready: &[bool]) {
        let open = self.pairs.iter_mut().filter(|p| p.source.is_some());
        for (i, pair) in open.enumerate() {
            if ready.get(i).copied().unwrap_or(false) {
                pair.copy(MAX_PER_PUMP);
            }
        }
    }

    /// Copies what is left in the sources without waiting, then closes the
    /// exec's pipes.
    pub fn finish(mut self) {
        for pair in self.pairs.iter_mut() {
            pair.copy(MAX_AT_FINISH);
        }
    }
}

impl Pair {
    /// Copies up to `limit` bytes, until the source is empty or at EOF.
    fn copy(&mut self, limit: usize) {
        let Some(source) = self.source.as_ref().map(|s| s.as_raw_fd()) else {
            return;
        };
        let mut buf = vec![0u8; 64 << 10];
        let mut copied = 0;
        while copied < limit {
            match nix::unistd::read(source, &mut buf) {
                Ok(0) => {
                    self.source = None;
                    return;
                }
                Ok(n) => {
                    copied += n;
                    self.write(&buf[..n]);
                }
                Err(Errno::EINTR) => continue,
                // EAGAIN: empty for now.
                Err(_) => return,
            }
        }
    }

    fn write(&mut self, mut data: &[u8]) {
        let Some(sink) = self.sink.as_ref() else {
            return;
        };
        while !data.is_empty() {
            match nix::unistd::write(sink, data) {
                Ok(n) => data = &data[n..],
                Err(Errno::EINTR) => continue,
                Err(_) => {
                    self.sink = None;
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::fcntl::{fcntl, FcntlArg, OFlag};

    fn nonblocking_pipe() -> (OwnedFd, OwnedFd) {
        let (r, w) = nix::unistd::pipe().unwrap();
        fcntl(r.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).unwrap();
        (r, w)
    }

    fn read_all(fd: OwnedFd) -> Vec<u8> {
        use std::io::Read;
        let mut v = Vec::new();
        std::fs::File::from(fd).read_to_end(&mut v).unwrap();
        v
    }

    #[test]
    fn copies_each_stream_to_its_sink_and_closes_the_sinks() {
        let (out_src, out_w) = nonblocking_pipe();
        let (err_src, err_w) = nonblocking_pipe();
        let (out_sink_r, out_sink) = nix::unistd::pipe().unwrap();
        let (err_sink_r, err_sink) = nix::unistd::pipe().unwrap();
        let mut relay = Relay::new(vec![(1, out_src), (2, err_src)], [out_sink, err_sink]);
        nix::unistd::write(&out_w, b"out").unwrap();
        nix::unistd::write(&err_w, b"err").unwrap();
        assert_eq!(relay.sources().len(), 2);
        relay.pump(&[true, false]);
        nix::unistd::write(&out_w, b"-more").unwrap();
        relay.finish();
        assert_eq!(read_all(out_sink_r), b"out-more");
        assert_eq!(read_all(err_sink_r), b"err");
    }

    #[test]
    fn a_missing_stream_ends_at_once() {
        let (out_src, _out_w) = nonblocking_pipe();
        let (out_sink_r, out_sink) = nix::unistd::pipe().unwrap();
        let (err_sink_r, err_sink) = nix::unistd::pipe().unwrap();
        let relay = Relay::new(vec![(1, out_src)], [out_sink, err_sink]);
        assert_eq!(relay.sources().len(), 1);
        assert_eq!(read_all(err_sink_r), b"");
        relay.finish();
        assert_eq!(read_all(out_sink_r), b"");
    }
}
