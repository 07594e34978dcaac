//! User namespace id maps.
//!
//! The holder unshares its user namespace and the parent (on the host) writes
//! the maps, because only a process in the parent namespace may map ids other
//! than its own.

use std::fs;
use std::io;

/// One line of `/proc/PID/uid_map` or `gid_map`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// The uid and gid maps of a session's user namespace for a caller with these ids.
///
/// Inside ids equal outside ids, so files the jail creates in the work dir belong
/// to the caller and tools see the caller's own uid.
pub fn plan_maps(euid: u32, egid: u32) -> (IdMap, IdMap) {
    (
        IdMap {
            inside: euid,
            outside: euid,
            count: 1,
        },
        IdMap {
            inside: egid,
            outside: egid,
            count: 1,
        },
    )
}

/// Writes the maps of process `pid`. `setgroups` is denied first: an
/// unprivileged writer must, and a jail never needs supplementary groups.
pub fn write_maps(pid: i32, uid: IdMap, gid: IdMap) -> io::Result<()> {
    let line = |m: IdMap| format!("{} {} {}\n", m.inside, m.outside, m.count);
    fs::write(format!("/proc/{pid}/setgroups"), "deny")?;
    fs::write(format!("/proc/{pid}/uid_map"), line(uid))
        .map_err(|e| io::Error::new(e.kind(), format!("writing uid_map: {e}")))?;
    fs::write(format!("/proc/{pid}/gid_map"), line(gid))
        .map_err(|e| io::Error::new(e.kind(), format!("writing gid_map: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_keep_the_callers_ids() {
        let (u, g) = plan_maps(1000, 100);
        assert_eq!((u.inside, u.outside, u.count), (1000, 1000, 1));
        assert_eq!((g.inside, g.outside, g.count), (100, 100, 1));
    }
}
