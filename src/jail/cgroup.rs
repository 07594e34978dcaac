//! A cgroup per session, where the host lets us make one: a memory limit on
//! the whole session (rlimits bound each process, not their sum) and a pids
//! limit that holds even if a command raises its own rlimits.
//!
//! Cgroups are optional. They work for root on cgroup v1 (each controller its
//! own hierarchy) and on v2 when the caller's cgroup may have children with
//! the memory and pids controllers. Elsewhere (most unprivileged users) the
//! session runs with rlimits only and its metadata says so (no `cgroups`).
//!
//! The session's cgroup is made *below the caller's own cgroup*, never at the
//! root of a hierarchy, so that the limits an administrator put on the caller
//! (a container, a systemd slice) keep covering its sessions.
//!
//! As elsewhere in the jail, the plan is pure data ([`plan`] from the text of
//! `/proc/self/mountinfo` and `/proc/self/cgroup`), and [`apply`] carries it out.

use crate::profile::Limits;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Processes a session has beyond its commands: the holder and one worker
/// per running exec (one at a time under the session lock, plus slack).
const SUPPORT_PROCESSES: u64 = 4;

/// One cgroup directory to create and the files to write in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupDir {
    pub path: PathBuf,
    pub writes: Vec<(&'static str, String)>,
}

/// Which cgroup hierarchies the caller sits in, as far as we use them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hierarchies {
    /// v1 memory controller: the caller's own cgroup directory.
    pub v1_memory: Option<PathBuf>,
    /// v1 pids controller: the caller's own cgroup directory.
    pub v1_pids: Option<PathBuf>,
    /// v2 (unified): the caller's own cgroup directory.
    pub v2: Option<PathBuf>,
}

impl Hierarchies {
    /// Reads the hierarchies of the calling process from `/proc/self`.
    pub fn of_self() -> Hierarchies {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        Hierarchies::parse(&mountinfo, &cgroup)
    }

    /// Pure: finds each hierarchy's mount and the caller's cgroup in it.
    pub fn parse(mountinfo: &str, proc_cgroup: &str) -> Hierarchies {
        let mut h = Hierarchies::default();
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            let (Some(root), Some(mount_point), Some(fstype)) =
                (left.get(3), left.get(4), right.first())
            else {
                continue;
            };
            let super_options = right.get(2).copied().unwrap_or("");
            let own = |controller: &str| -> Option<PathBuf> {
                let path = own_path(proc_cgroup, controller)?;
                // The mount shows the hierarchy from `root`; our path is
                // relative to the hierarchy's top.
                let rel = path.strip_prefix(root.trim_end_matches('/'))?;
                let rel = rel.trim_start_matches('/');
                Some(Path::new(mount_point).join(rel))
            };
            match *fstype {
                "cgroup2" if h.v2.is_none() => h.v2 = own(""),
                "cgroup" => {
                    let opts: Vec<&str> = super_options.split(',').collect();
                    if opts.contains(&"memory") && h.v1_memory.is_none() {
                        h.v1_memory = own("memory");
                    }
                    if opts.contains(&"pids") && h.v1_pids.is_none() {
                        h.v1_pids = own("pids");
                    }
                }
                _ => {}
            }
        }
        h
    }
}

/// The caller's cgroup path for `controller` ("" means the v2 line `0::`).
fn own_path<'a>(proc_cgroup: &'a str, controller: &str) -> Option<&'a str> {
    proc_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_id, list, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = if controller.is_empty() {
            list.is_empty()
        } else {
            list.split(',').any(|c| c == controller)
        };
        matches.then_some(path)
    })
}

/// The cgroups of one session: v1 when the memory or pids hierarchy is
/// mounted (the hybrid layout's v2 tree has no controllers), else v2.
pub fn plan(h: &Hierarchies, session_name: &str, limits: &Limits) -> Vec<CgroupDir> {
    let pids_max = limits
        .processes
        .map(|n| (n + SUPPORT_PROCESSES).to_string());
    let memory = limits.memory_bytes.map(|b| b.to_string());
    let leaf = format!("delta-sessions-{session_name}");
    let mut dirs = Vec::new();
    if h.v1_memory.is_some() || h.v1_pids.is_some() {
        if let (Some(base), Some(bytes)) = (&h.v1_memory, &memory) {
            dirs.push(CgroupDir {
                path: base.join(&leaf),
                writes: vec![("memory.limit_in_bytes", bytes.clone())],
            });
        }
        if let (Some(base), Some(max)) = (&h.v1_pids, &pids_max) {
            dirs.push(CgroupDir {
                path: base.join(&leaf),
                writes: vec![("pids.max", max.clone())],
            });
        }
    } else if let Some(base) = &h.v2 {
        let mut writes = Vec::new();
        if let Some(bytes) = &memory {
            writes.push(("memory.max", bytes.clone()));
            // Without this the kernel swaps the session out instead of
            // stopping it at its limit.
            writes.push(("memory.swap.max", "0".to_string()));
        }
        if let Some(max) = &pids_max {
            writes.push(("pids.max", max.clone()));
        }
        if !writes.is_empty() {
            dirs.push(CgroupDir {
                path: base.join(&leaf),
                writes,
            });
        }
    }
    dirs
}

/// Every directory a session named `session_name` may have been given, for
/// removing them when its record is lost.
pub fn possible_dirs(h: &Hierarchies, session_name: &str) -> Vec<PathBuf> {
    let leaf = format!("delta-sessions-{session_name}");
    [&h.v1_memory, &h.v1_pids, &h.v2]
        .into_iter()
        .flatten()
        .map(|base| base.join(&leaf))
        .collect()
}

/// Removes the empty session cgroups (`delta-sessions-sess_*`) below this
/// caller's own whose session `unclaimed` says nothing can own any more:
/// those of holders that died before anyone recorded them (a `start` killed
/// at the wrong moment: the holder exits by itself, but cannot remove the
/// cgroup it is in). A cgroup with a process in it is never touched.
/// (cgroupfs keeps no reliable times, so age comes from the state dir.)
pub fn sweep_orphans(h: &Hierarchies, unclaimed: &dyn Fn(&str) -> bool) {
    for base in [&h.v1_memory, &h.v1_pids, &h.v2].into_iter().flatten() {
        let Ok(entries) = std::fs::read_dir(base) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_prefix("delta-sessions-"))
                .filter(|id| crate::store::SessionId::is_valid(id))
            else {
                continue;
            };
            let path = entry.path();
            let empty = std::fs::read_to_string(path.join("cgroup.procs"))
                .is_ok_and(|procs| procs.trim().is_empty());
            if empty && unclaimed(id) {
                // Fails harmlessly (EBUSY) if a process joined meanwhile.
                let _ = std::fs::remove_dir(&path);
            }
        }
    }
}

/// Creates the session's cgroups and moves `pid` (the holder, before it has
/// any child) into them. Returns the directories made; on any failure
/// (typically: not allowed) removes what it made and returns the reason.
pub fn apply(dirs: &[CgroupDir], pid: i32) -> Result<Vec<PathBuf>> {
    let mut made = Vec::new();
    let result = (|| -> Result<()> {
        for dir in dirs {
            match std::fs::create_dir(&dir.path) {
                Ok(()) => {}
                // Left by a holder that died: reuse it (it is empty or dying).
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create {}", dir.path.display()))
                }
            }
            made.push(dir.path.clone());
            for (file, value) in &dir.writes {
                let path = dir.path.join(file);
                match std::fs::write(&path, value) {
                    Ok(()) => {}
                    // memory.swap.max is missing when swap accounting is off:
                    // there is no swap to limit then.
                    Err(e)
                        if *file == "memory.swap.max"
                            && e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(e).with_context(|| format!("cannot write {}", path.display()))
                    }
                }
            }
            std::fs::write(dir.path.join("cgroup.procs"), pid.to_string())
                .with_context(|| format!("cannot move the holder into {}", dir.path.display()))?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(made),
        Err(e) => {
            remove(&made);
            Err(e)
        }
    }
}

/// Whether `start` could make these cgroups (for `doctor`): creates each
/// directory and removes it again.
pub fn probe(dirs: &[CgroupDir]) -> Result<()> {
    for dir in dirs {
        std::fs::create_dir(&dir.path)
            .with_context(|| format!("cannot create {}", dir.path.display()))?;
        // On v2 a child has a controller's files only if its parent enables
        // the controller for its children.
        let missing = dir
            .writes
            .iter()
            .map(|(file, _)| *file)
            .find(|file| *file != "memory.swap.max" && !dir.path.join(file).exists());
        let _ = std::fs::remove_dir(&dir.path);
        if let Some(file) = missing {
            anyhow::bail!("{} has no {file}", dir.path.display());
        }
    }
    Ok(())
}

/// Removes a session's cgroups once its processes are gone. A cgroup that
/// still has members cannot be removed; the kernel frees them a moment after
/// the last one exits, so this retries briefly.
pub fn remove(dirs: &[PathBuf]) {
    for dir in dirs {
        kill_members(dir);
        for _ in 0..100 {
            match std::fs::remove_dir(dir) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(_) => break,
            }
        }
    }
}

/// Kills what is still in a session's cgroup. In a jail, killing the holder
/// already took everything; without a PID namespace (Landlock mode,
/// `none`), a process orphaned when its holder was killed from outside is
/// no longer below any holder, but it is still here. The list is the
/// kernel's (`cgroup.procs`); rounds repeat while processes fork.
fn kill_members(dir: &std::path::Path) {
    for _ in 0..100 {
        let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) else {
            return;
        };
        let pids: Vec<i32> = text
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .filter(|&p| p > 1 && super::procfs::is_running(p))
            .collect();
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            // SAFETY: plain kill(2).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const V1_CGROUP: &str = "\
8:pids:/
4:memory:/process_api/2e84
1:cpu:/
0::/
";

    fn limits(memory: Option<u64>, processes: Option<u64>) -> Limits {
        let mut l = crate::profile::Profile::load("default").unwrap().limits;
        l.memory_bytes = memory;
        l.processes = processes;
        l
    }

    #[test]
    fn finds_v1_controllers_below_the_callers_own_cgroup() {
        let h = Hierarchies::parse(V1_MOUNTINFO, V1_CGROUP);
        assert_eq!(
            h.v1_memory.as_deref(),
            Some(Path::new("/sys/fs/cgroup/memory/process_api/2e84"))
        );
        assert_eq!(h.v1_pids.as_deref(), Some(Path::new("/sys/fs/cgroup/pids")));
        assert_eq!(h.v2.as_deref(), Some(Path::new("/sys/fs/cgroup/unified")));
    }

    #[test]
    fn v1_plan_limits_memory_and_pids_with_room_for_the_holder() {
        let h = Hierarchies::parse(V1_MOUNTINFO, V1_CGROUP);
        let dirs = plan(&h, "sess_1", &limits(Some(1 << 30), Some(100)));
        assert_eq!(
            dirs,
            vec![
                CgroupDir {
                    path: "/sys/fs/cgroup/memory/process_api/2e84/delta-sessions-sess_1".into(),
                    writes: vec![("memory.limit_in_bytes", "1073741824".into())],
                },
                CgroupDir {
                    path: "/sys/fs/cgroup/pids/delta-sessions-sess_1".into(),
                    writes: vec![("pids.max", "104".into())],
                },
            ]
        );
    }

    #[test]
    fn v2_plan_is_one_directory_below_the_own_cgroup() {
        let mountinfo = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let cgroup = "0::/user.slice/user-1000.slice/user@1000.service/app.slice\n";
        let h = Hierarchies::parse(mountinfo, cgroup);
        let dirs = plan(&h, "sess_2", &limits(Some(512 << 20), None));
        assert_eq!(dirs.len(), 1);
        assert_eq!(
            dirs[0].path,
            Path::new("/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/delta-sessions-sess_2")
        );
        assert_eq!(
            dirs[0].writes,
            vec![
                ("memory.max", "536870912".to_string()),
                ("memory.swap.max", "0".to_string())
            ]
        );
    }

    #[test]
    fn mount_roots_below_the_top_are_accounted_for() {
        // A container that sees only its own part of the hierarchy.
        let mountinfo =
            "35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let cgroup = "4:memory:/docker/abc/inner\n";
        let h = Hierarchies::parse(mountinfo, cgroup);
        assert_eq!(
            h.v1_memory.as_deref(),
            Some(Path::new("/sys/fs/cgroup/memory/inner"))
        );
    }

    #[test]
    fn possible_dirs_cover_every_hierarchy() {
        let h = Hierarchies::parse(V1_MOUNTINFO, V1_CGROUP);
        let dirs = possible_dirs(&h, "s");
        assert_eq!(dirs.len(), 3);
        assert!(dirs.iter().all(|d| d.ends_with("delta-sessions-s")));
    }

    #[test]
    fn nothing_to_do_without_limits_or_hierarchies() {
        let h = Hierarchies::parse(V1_MOUNTINFO, V1_CGROUP);
        assert!(plan(&h, "s", &limits(None, None)).is_empty());
        assert!(plan(&Hierarchies::default(), "s", &limits(Some(1), Some(1))).is_empty());
    }
}
