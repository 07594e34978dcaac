//! Advisory whole-file locks (`flock`). The kernel drops them when the holding
//! process dies, so a crashed call never leaves a session locked.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// An exclusive lock, released on drop.
#[derive(Debug)]
pub struct FileLock {
    file: File,
}

impl FileLock {
    /// Whether the locked file still has a name: a lock on a file that was
    /// unlinked meanwhile (its directory removed) guards nothing.
    pub fn is_linked(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        self.file.metadata().is_ok_and(|m| m.nlink() > 0)
    }

    /// Blocks until the exclusive lock on `path` (created if missing) is ours.
    pub fn exclusive(path: &Path) -> io::Result<FileLock> {
        Self::take(path, None)
    }

    /// [`exclusive`](Self::exclusive), giving up with `TimedOut` after
    /// `limit`: for locks our own processes hold only briefly, which a
    /// process that is not ours (a Landlock session can reach its records)
    /// could otherwise hold for ever.
    pub fn exclusive_within(path: &Path, limit: std::time::Duration) -> io::Result<FileLock> {
        Self::take(path, Some(std::time::Instant::now() + limit))
    }

    fn take(path: &Path, deadline: Option<std::time::Instant>) -> io::Result<FileLock> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            // A lock is never taken through a symlink (it would create or
            // open whatever the link names), nor on a FIFO or device.
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a regular file", path.display()),
            ));
        }
        let mode = if deadline.is_some() {
            libc::LOCK_EX | libc::LOCK_NB
        } else {
            libc::LOCK_EX
        };
        loop {
            // SAFETY: flock on a file descriptor we own; no memory is involved.
            let rc = unsafe { libc::flock(file.as_raw_fd(), mode) };
            if rc == 0 {
                return Ok(FileLock { file });
            }
            let err = io::Error::last_os_error();
            match (err.raw_os_error(), deadline) {
                (Some(libc::EINTR), _) => {}
                (Some(libc::EWOULDBLOCK), Some(end)) if std::time::Instant::now() < end => {
                    std::thread::sleep(std::time::Duration::from_millis(2))
                }
                (Some(libc::EWOULDBLOCK), Some(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("{} stays locked by another process", path.display()),
                    ))
                }
                _ => return Err(err),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_is_never_taken_through_a_symlink_or_on_a_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        let link = dir.path().join("meta.lock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(FileLock::exclusive(&link).is_err());
        assert!(!target.exists(), "the link's target was created");
        let fifo = dir.path().join("exec.lock");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(FileLock::exclusive(&fifo).is_err());
        let plain = FileLock::exclusive(&dir.path().join("ok.lock")).unwrap();
        assert!(plain.is_linked());
        let held = dir.path().join("ok.lock");
        let t = std::time::Instant::now();
        let e =
            FileLock::exclusive_within(&held, std::time::Duration::from_millis(50)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
        drop(plain);
        assert!(FileLock::exclusive_within(&held, std::time::Duration::from_millis(50)).is_ok());
    }
}
