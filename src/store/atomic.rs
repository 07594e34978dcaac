//! Crash-safe file updates: write a temporary file beside the target, then
//! rename it over the target. A process killed at any instant leaves either the
//! old or the new content, never a torn file.

use std::io::{self, Write};
use std::path::Path;

/// Replaces `path` with `bytes` atomically (temporary file in the same directory + rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    // Named after the target and this process: two processes never share a
    // temporary file, and no random name has to be drawn on every exec. It
    // is always made new (O_EXCL: nothing that is there is ever opened, not
    // a FIFO, not a symlink, that a jail able to write the directory (the
    // records of a Landlock session lie in its work dir) planted under the
    // name); one left by a process killed midway, or planted, is unlinked
    // first (unlink never follows a link).
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".tmp-{name}-{}", std::process::id()));
    let written = (|| {
        let mut attempts = 0;
        let mut f = loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
                .open(&tmp)
            {
                Ok(f) => break f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 3 => {
                    attempts += 1;
                    std::fs::remove_file(&tmp).or_else(|e| match e.kind() {
                        io::ErrorKind::NotFound => Ok(()),
                        _ => Err(e),
                    })?;
                }
                Err(e) => return Err(e),
            }
        };
        f.write_all(bytes)?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Serializes `value` as pretty JSON (one trailing newline) and writes it atomically.
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("state.json");
        write_atomic(&target, b"one").unwrap();
        write_atomic(&target, b"two").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    }

    #[test]
    fn a_fifo_or_symlink_planted_as_the_temporary_is_never_opened() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("metadata.json");
        let tmp = dir
            .path()
            .join(format!(".tmp-metadata.json-{}", std::process::id()));
        nix::unistd::mkfifo(&tmp, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // Would block forever if the FIFO were opened for writing.
        write_atomic(&target, b"one").unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        write_atomic(&target, b"two").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert_eq!(std::fs::read(&target).unwrap(), b"two");
    }
}
