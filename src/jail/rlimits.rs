//! Resource limits of a profile as `setrlimit` calls.
//!
//! [`plan`] is pure and runs before fork; [`apply`] runs in the forked child
//! between fork and exec, so it only loops over the prepared steps and makes
//! system calls: no allocation, no formatting, no locks.
//!
//! Limits only ever go down: if the inherited hard limit is already lower
//! than the profile's, the inherited one is kept (an unprivileged process
//! cannot raise it anyway). A limit the profile leaves unset (`None`) is not
//! touched. Core dumps are always off.

use crate::profile::Limits;

/// Seconds between SIGXCPU (soft CPU limit) and SIGKILL (hard CPU limit).
pub const CPU_GRACE_SECONDS: u64 = 5;

/// The resources a profile limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// RLIMIT_CPU, seconds of CPU time.
    Cpu,
    /// RLIMIT_AS, bytes of address space.
    AddressSpace,
    /// RLIMIT_NPROC, processes (threads) of the user.
    Processes,
    /// RLIMIT_FSIZE, bytes a file may grow to.
    FileSize,
    /// RLIMIT_NOFILE, one more than the highest descriptor number.
    OpenFiles,
    /// RLIMIT_CORE, bytes of a core dump.
    Core,
}

impl Resource {
    fn raw(self) -> libc::__rlimit_resource_t {
        match self {
            Resource::Cpu => libc::RLIMIT_CPU,
            Resource::AddressSpace => libc::RLIMIT_AS,
            Resource::Processes => libc::RLIMIT_NPROC,
            Resource::FileSize => libc::RLIMIT_FSIZE,
            Resource::OpenFiles => libc::RLIMIT_NOFILE,
            Resource::Core => libc::RLIMIT_CORE,
        }
    }
}

/// One `setrlimit` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RlimitStep {
    pub resource: Resource,
    pub soft: u64,
    pub hard: u64,
}

/// The `setrlimit` calls for `limits`, in a fixed order.
pub fn plan(limits: &Limits) -> Vec<RlimitStep> {
    let same = |resource, v: u64| RlimitStep {
        resource,
        soft: v,
        hard: v,
    };
    let mut steps = Vec::with_capacity(6);
    if let Some(s) = limits.cpu_seconds {
        // SIGXCPU at the soft limit (catchable), SIGKILL at the hard one.
        steps.push(RlimitStep {
            resource: Resource::Cpu,
            soft: s,
            hard: s.saturating_add(CPU_GRACE_SECONDS),
        });
    }
    if let Some(b) = limits.memory_bytes {
        steps.push(same(Resource::AddressSpace, b));
    }
    if let Some(n) = limits.processes {
        steps.push(same(Resource::Processes, n));
    }
    if let Some(b) = limits.file_size_bytes {
        steps.push(same(Resource::FileSize, b));
    }
    if let Some(n) = limits.open_files {
        steps.push(same(Resource::OpenFiles, n));
    }
    steps.push(same(Resource::Core, 0));
    steps
}

/// Applies `steps` to the calling process. Async-signal-safe: only
/// `getrlimit`/`setrlimit` system calls, no allocation.
pub fn apply(steps: &[RlimitStep]) -> std::io::Result<()> {
    for step in steps {
        let mut current = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we pass.
        if unsafe { libc::getrlimit(step.resource.raw(), &mut current) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let wanted = libc::rlimit {
            rlim_cur: step.soft as libc::rlim_t,
            rlim_max: step.hard as libc::rlim_t,
        };
        let limit = lowered(current, wanted);
        // SAFETY: setrlimit reads the struct we pass.
        if unsafe { libc::setrlimit(step.resource.raw(), &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `wanted`, never above the current hard limit (RLIM_INFINITY is the
/// largest value, so plain comparisons work).
fn lowered(current: libc::rlimit, wanted: libc::rlimit) -> libc::rlimit {
    let hard = wanted.rlim_max.min(current.rlim_max);
    libc::rlimit {
        rlim_cur: wanted.rlim_cur.min(hard),
        rlim_max: hard,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            timeout_ms: 1000,
            kill_grace_ms: 100,
            cpu_seconds: Some(60),
            memory_bytes: Some(1 << 30),
            processes: Some(128),
            file_size_bytes: Some(256 << 20),
            open_files: Some(256),
            output_bytes: 1 << 20,
            disk_bytes: None,
        }
    }

    #[test]
    fn plan_covers_every_limit_and_core() {
        let steps = plan(&limits());
        let want = [
            (Resource::Cpu, 60, 65),
            (Resource::AddressSpace, 1 << 30, 1 << 30),
            (Resource::Processes, 128, 128),
            (Resource::FileSize, 256 << 20, 256 << 20),
            (Resource::OpenFiles, 256, 256),
            (Resource::Core, 0, 0),
        ];
        let got: Vec<_> = steps.iter().map(|s| (s.resource, s.soft, s.hard)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn unset_limits_are_left_alone_but_core_is_always_off() {
        let l = Limits {
            cpu_seconds: None,
            memory_bytes: None,
            processes: None,
            file_size_bytes: None,
            open_files: None,
            ..limits()
        };
        assert_eq!(
            plan(&l),
            [RlimitStep {
                resource: Resource::Core,
                soft: 0,
                hard: 0
            }]
        );
    }

    #[test]
    fn cpu_hard_limit_does_not_overflow() {
        let l = Limits {
            cpu_seconds: Some(u64::MAX),
            ..limits()
        };
        assert_eq!(plan(&l)[0].hard, u64::MAX);
    }

    #[test]
    fn limits_are_never_raised() {
        let r = |c, m| libc::rlimit {
            rlim_cur: c,
            rlim_max: m,
        };
        let inf = libc::RLIM_INFINITY;
        let got = lowered(r(10, 100), r(60, 65));
        assert_eq!((got.rlim_cur, got.rlim_max), (60, 65));
        let got = lowered(r(10, 50), r(60, 65));
        assert_eq!((got.rlim_cur, got.rlim_max), (50, 50));
        let got = lowered(r(inf, inf), r(60, 65));
        assert_eq!((got.rlim_cur, got.rlim_max), (60, 65));
        let got = lowered(r(1024, 4096), r(65536, 65536));
        assert_eq!((got.rlim_cur, got.rlim_max), (4096, 4096));
    }

    /// Applies a plan in a forked child and checks it with getrlimit there.
    #[test]
    fn apply_in_a_forked_child() {
        let steps = plan(&Limits {
            processes: None,
            ..limits()
        });
        let check =
            |resource: libc::__rlimit_resource_t, soft: libc::rlim_t, hard: libc::rlim_t| -> bool {
                let mut r = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                // SAFETY: getrlimit writes into the struct we pass.
                let got = unsafe { libc::getrlimit(resource, &mut r) };
                got == 0 && r.rlim_cur <= soft && r.rlim_max <= hard
            };
        // SAFETY: the child only makes system calls and leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let ok = apply(&steps).is_ok()
                && check(libc::RLIMIT_CPU, 60, 65)
                && check(libc::RLIMIT_AS, 1 << 30, 1 << 30)
                && check(libc::RLIMIT_FSIZE, 256 << 20, 256 << 20)
                && check(libc::RLIMIT_NOFILE, 256, 256)
                && check(libc::RLIMIT_CORE, 0, 0);
            // SAFETY: leaves the child without running the parent's destructors.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(waited, pid);
        assert!(libc::WIFEXITED(status), "status {status:#x}");
        assert_eq!(libc::WEXITSTATUS(status), 0);
    }
}
