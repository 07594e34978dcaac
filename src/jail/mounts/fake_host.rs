//! A host described by a table, for the pure planners' unit tests (mounts
//! and Landlock grants): nothing is read from the real machine.

use super::plan::{HostKind, HostView};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// A host described by a table; anything not listed is missing.
#[derive(Default)]
pub struct FakeHost(pub BTreeMap<PathBuf, HostKind>);

impl FakeHost {
    /// A Debian-like host with merged /usr, a few /etc files and secrets.
    pub fn debian() -> FakeHost {
        let mut h = FakeHost::default();
        for d in [
            "/usr",
            "/etc",
            "/etc/ssh",
            "/etc/sudoers.d",
            "/opt",
            "/tmp",
            "/home",
        ] {
            h.0.insert(d.into(), HostKind::Dir);
        }
        for (l, t) in [
            ("/bin", "usr/bin"),
            ("/lib", "usr/lib"),
            ("/lib64", "usr/lib64"),
            ("/sbin", "usr/sbin"),
        ] {
            h.0.insert(l.into(), HostKind::Symlink(t.into()));
        }
        for f in [
            "/etc/shadow",
            "/etc/gshadow",
            "/etc/passwd",
            "/etc/resolv.conf",
            "/etc/ssh/ssh_host_ed25519_key",
            "/etc/ssh/ssh_host_ed25519_key.pub",
            "/etc/ssh/ssh_config",
        ] {
            h.0.insert(f.into(), HostKind::File);
        }
        h
    }

    /// Adds `p` as a directory.
    pub fn dir(self, p: &str) -> Self {
        self.with(p, HostKind::Dir)
    }

    /// Adds `path` as `kind`.
    pub fn with(mut self, p: &str, kind: HostKind) -> Self {
        self.0.insert(p.into(), kind);
        self
    }
}

impl HostView for FakeHost {
    fn kind(&self, path: &Path) -> HostKind {
        self.0.get(path).cloned().unwrap_or(HostKind::Missing)
    }
    fn list(&self, dir: &Path) -> Vec<OsString> {
        self.0
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(OsString::from))
            .collect()
    }
}
