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

/// The uid and gid maps of a session's user namespace.
///
/// A regular caller keeps its own ids inside, so files the jail creates belong
/// to it and tools see its uid. Root's jails run as `root_jail_id` (one of
/// [`ROOT_JAIL_UID`](super::idmap::ROOT_JAIL_UID)'s reserved range, one per session) on the host and,
/// inside, as the owner of the work dir (`dir_owner`), whose files the
/// idmapped work dir mount then lets them write.
pub fn plan_maps(euid: u32, egid: u32, dir_owner: (u32, u32), root_jail_id: u32) -> (IdMap, IdMap) {
    let one = |inside, outside| IdMap {
        inside,
        outside,
        count: 1,
    };
    if euid == 0 {
        (
            one(dir_owner.0, root_jail_id),
            one(dir_owner.1, root_jail_id),
        )
    } else {
        (one(euid, euid), one(egid, egid))
    }
}

/// Whether jails of this caller need idmapped mounts (see [`super::idmap`]).
pub fn needs_idmapped_mounts(euid: u32) -> bool {
    euid == 0
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
    use super::super::idmap::ROOT_JAIL_UID;
    use super::*;

    #[test]
    fn maps_keep_a_regular_callers_ids() {
        let (u, g) = plan_maps(1000, 100, (0, 0), ROOT_JAIL_UID + 7);
        assert_eq!((u.inside, u.outside, u.count), (1000, 1000, 1));
        assert_eq!((g.inside, g.outside, g.count), (100, 100, 1));
        assert!(!needs_idmapped_mounts(1000));
    }

    #[test]
    fn root_never_maps_to_host_root() {
        let (u, g) = plan_maps(0, 0, (0, 0), ROOT_JAIL_UID + 7);
        assert_eq!((u.inside, u.outside), (0, ROOT_JAIL_UID + 7));
        assert_eq!((g.inside, g.outside), (0, ROOT_JAIL_UID + 7));
        let (u, _) = plan_maps(0, 0, (1000, 1000), ROOT_JAIL_UID + 8);
        assert_eq!((u.inside, u.outside), (1000, ROOT_JAIL_UID + 8));
        assert!(needs_idmapped_mounts(0));
    }
}
