//! Reading process facts from `/proc`: start times (to recognise a holder
//! whose pid may have been reused) and process trees (to kill everything an
//! exec or a session started, even processes that called `setsid`).

use std::collections::HashMap;
use std::fs;
use std::io;

/// Fields of `/proc/PID/stat` after the parenthesised command name.
fn stat_fields(pid: i32) -> io::Result<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may contain spaces and parentheses: split after the last ')'.
    let close = text
        .rfind(')')
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed /proc stat"))?;
    Ok(text[close + 1..]
        .split_whitespace()
        .map(str::to_owned)
        .collect())
}

/// Start time of `pid` in clock ticks since boot (field 22 of `/proc/PID/stat`).
pub fn start_time(pid: i32) -> io::Result<u64> {
    let fields = stat_fields(pid)?;
    // Field 3 (state) is index 0 here, so field 22 is index 19.
    fields
        .get(19)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no start time in /proc stat"))
}

/// Whether `pid` is alive: it exists and is not a zombie (which no signal
/// reaches; a host whose init does not reap keeps them for good).
pub fn is_running(pid: i32) -> bool {
    stat_fields(pid).is_ok_and(|f| f.first().is_some_and(|state| state != "Z" && state != "X"))
}

/// The pid -> parent pid map of every process visible in `/proc`.
pub fn parent_map() -> HashMap<i32, i32> {
    let mut map = HashMap::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return map;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // A process may exit between readdir and read: skip it.
        if let Ok(fields) = stat_fields(pid) {
            if let Some(ppid) = fields.get(1).and_then(|f| f.parse().ok()) {
                map.insert(pid, ppid);
            }
        }
    }
    map
}

/// The subtree below `root` from `/proc/PID/task/TID/children`, or `None`
/// where the kernel has no such files. A process that exits meanwhile is
/// skipped; one that forks meanwhile is found by the caller's next round.
fn descendants_by_children(root: i32) -> Option<Vec<i32>> {
    let probe = format!("/proc/{root}/task/{root}/children");
    if fs::metadata(&probe).is_err() {
        return if fs::metadata(format!("/proc/{root}")).is_ok() {
            None
        } else {
            Some(Vec::new())
        };
    }
    let mut out = Vec::new();
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let Ok(text) = fs::read_to_string(task.path().join("children")) else {
                continue;
            };
            for kid in text
                .split_whitespace()
                .filter_map(|k| k.parse::<i32>().ok())
            {
                if kid != root && !out.contains(&kid) {
                    out.push(kid);
                    queue.push(kid);
                }
            }
        }
    }
    Some(out)
}

/// Pids of the processes in session `sid` (field 6 of `/proc/PID/stat`),
/// and all their descendants (a process that left the session with its own
/// `setsid` is still found while its parent chain leads back).
pub fn session_members(sid: i32) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            stat_fields(pid)
                .ok()
                .and_then(|f| f.get(3).and_then(|s| s.parse::<i32>().ok()))
                == Some(sid)
        })
        .collect();
    let roots = found.clone();
    for r in roots {
        for d in descendants(r) {
            if !found.contains(&d) {
                found.push(d);
            }
        }
    }
    found
}

/// Every descendant of `root` (not `root` itself), parents before children.
pub fn descendants(root: i32) -> Vec<i32> {
    // Walking the children lists reads only the subtree; the whole process
    // table (thousands of entries on a busy host) is the fallback for
    // kernels without them (CONFIG_PROC_CHILDREN).
    if let Some(found) = descendants_by_children(root) {
        return found;
    }
    let map = parent_map();
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for (&pid, &ppid) in &map {
        children.entry(ppid).or_default().push(pid);
    }
    let mut out = Vec::new();
    let mut queue = vec![root];
    while let Some(p) = queue.pop() {
        if let Some(kids) = children.get(&p) {
            for &k in kids {
                if k != root && !out.contains(&k) {
                    out.push(k);
                    queue.push(k);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_readable_and_stable() {
        let me = std::process::id() as i32;
        let a = start_time(me).unwrap();
        assert_eq!(a, start_time(me).unwrap());
        assert!(start_time(i32::MAX).is_err());
    }

    #[test]
    fn finds_the_members_of_a_session() {
        let mut child = std::process::Command::new("setsid")
            .args(["sleep", "5"])
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let mut found = Vec::new();
        for _ in 0..200 {
            found = session_members(pid);
            if !found.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(found, vec![pid]);
    }

    #[test]
    fn finds_a_child_as_descendant() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let me = std::process::id() as i32;
        assert!(descendants(me).contains(&(child.id() as i32)));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
