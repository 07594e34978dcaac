//! The jail's seccomp filter: a deny-list of the system calls that let a process reach past
//! its namespaces (mounts, new namespaces, kernel modules, tracing other processes, kernel
//! keyrings, terminal input injection, …).
//!
//! Everything that is not listed is allowed: the jail's namespaces, dropped capabilities and
//! file-system view do the confining; this filter takes away the tools an escape would use and
//! shrinks the kernel attack surface. The list is data ([`DENY_LIST`]) so that the docs, the
//! `doctor` command and the tests can read it.
//!
//! Build the program with [`build_filter`] *before* `fork` (it allocates) and load it with
//! [`install`] in the child (it only makes system calls).

use std::io;

use anyhow::Context as _;
use libc::c_long;
use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

/// When a listed system call is denied, judged on the low 32 bits of one argument (the kernel
/// reads `clone` flags, `ioctl` requests and `personality` values as 32-bit, so a check on all
/// 64 bits could be dodged by setting high bits the kernel then ignores).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// On every call.
    Always,
    /// When argument `arg` has any of the bits of `bits` set.
    AnyBit {
        /// Argument index (0-based).
        arg: u8,
        /// The bits, each of which denies the call on its own.
        bits: u32,
    },
    /// When argument `arg` equals one of `values`.
    OneOf {
        /// Argument index (0-based).
        arg: u8,
        /// The denied values.
        values: &'static [u32],
    },
    /// When argument `arg`, a pointer, is not NULL (all 64 bits compared).
    NotNull {
        /// Argument index (0-based).
        arg: u8,
    },
    /// When argument `arg` equals none of `values`.
    NoneOf {
        /// Argument index (0-based).
        arg: u8,
        /// The only allowed values.
        values: &'static [u32],
    },
}

/// One row of the deny-list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Denied {
    /// The system call's name, as in `man 2`.
    pub name: &'static str,
    /// Its number on this architecture.
    pub nr: c_long,
    /// The error the caller gets back.
    pub errno: i32,
    /// Which calls are denied.
    pub when: When,
}

const fn deny(name: &'static str, nr: c_long) -> Denied {
    Denied {
        name,
        nr,
        errno: libc::EPERM,
        when: When::Always,
    }
}

/// Every namespace flag `clone` accepts. `CLONE_NEWTIME` shares its bit with the exit-signal
/// byte of `clone`, but no valid signal uses that bit, so denying it costs nothing.
const CLONE_NAMESPACE_FLAGS: u32 = (libc::CLONE_NEWUSER
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWTIME) as u32;

/// `personality` values that ordinary programs use: `PER_LINUX` (0), `PER_LINUX32` (8, for
/// `setarch`/`linux32`), `UNAME26` alone and with `PER_LINUX32`, and the 0xffffffff query.
/// Others (`READ_IMPLIES_EXEC`, `ADDR_NO_RANDOMIZE`, `MMAP_PAGE_ZERO`, …) weaken memory
/// protections that exploits of the kernel or of other programs count on.
const PERSONALITIES: &[u32] = &[0, 0x0008, 0x0002_0000, 0x0002_0008, 0xffff_ffff];

/// `ioctl` requests that push bytes into a terminal's input queue (`TIOCSTI`) or drive the
/// Linux console (`TIOCLINUX`, whose selection paste is an injection too): a jailed process
/// holding an inherited terminal could type commands into the shell outside the jail.
const TTY_INJECTION: &[u32] = &[libc::TIOCSTI as u32, libc::TIOCLINUX as u32];

/// `open_tree_attr` (Linux 6.15), which libc does not name yet; numbers are shared by all
/// architectures since the unified syscall table, so 467 is it on x86_64 and aarch64 alike.
const SYS_OPEN_TREE_ATTR: c_long = 467;

/// `fchmodat2` (Linux 6.6), which libc does not name yet; the same number on
/// x86_64 and aarch64 (unified syscall table).
const SYS_FCHMODAT2: c_long = 452;

/// The mode bits no file made or changed in a jail may carry.
pub const SET_ID_BITS: u32 = libc::S_ISUID | libc::S_ISGID;

/// Socket families a jail may open.
const SOCKET_FAMILIES: &[u32] = &[
    libc::AF_UNIX as u32,
    libc::AF_INET as u32,
    libc::AF_INET6 as u32,
    libc::AF_NETLINK as u32,
];

/// A row that refuses `name` when its mode argument `arg` has a set-id bit.
const fn mode_bits(name: &'static str, nr: c_long, arg: u8) -> Denied {
    Denied {
        name,
        nr,
        errno: libc::EPERM,
        when: When::AnyBit {
            arg,
            bits: SET_ID_BITS,
        },
    }
}

/// The deny-list. Each group is explained in `docs/security.md`.
pub const DENY_LIST: &[Denied] = &[
    // Mounts and root changes: the jail's file-system view must stay as built.
    deny("mount", libc::SYS_mount),
    deny("umount2", libc::SYS_umount2),
    deny("pivot_root", libc::SYS_pivot_root),
    deny("chroot", libc::SYS_chroot),
    deny("fsopen", libc::SYS_fsopen),
    deny("fsconfig", libc::SYS_fsconfig),
    deny("fsmount", libc::SYS_fsmount),
    deny("fspick", libc::SYS_fspick),
    deny("move_mount", libc::SYS_move_mount),
    deny("open_tree", libc::SYS_open_tree),
    deny("open_tree_attr", SYS_OPEN_TREE_ATTR),
    deny("mount_setattr", libc::SYS_mount_setattr),
    // New namespaces give back a full capability set; setns joins someone else's.
    deny("unshare", libc::SYS_unshare),
    deny("setns", libc::SYS_setns),
    Denied {
        name: "clone",
        nr: libc::SYS_clone,
        errno: libc::EPERM,
        when: When::AnyBit {
            arg: 0,
            bits: CLONE_NAMESPACE_FLAGS,
        },
    },
    // clone3 passes its flags in memory, which seccomp cannot read. ENOSYS (not EPERM) makes
    // glibc and others fall back to clone, whose flags the rule above can see.
    Denied {
        name: "clone3",
        nr: libc::SYS_clone3,
        errno: libc::ENOSYS,
        when: When::Always,
    },
    // The machine itself: power, kernel code, swap, accounting, kernel log, quotas, clocks.
    deny("reboot", libc::SYS_reboot),
    deny("kexec_load", libc::SYS_kexec_load),
    deny("kexec_file_load", libc::SYS_kexec_file_load),
    deny("init_module", libc::SYS_init_module),
    deny("finit_module", libc::SYS_finit_module),
    deny("delete_module", libc::SYS_delete_module),
    deny("swapon", libc::SYS_swapon),
    deny("swapoff", libc::SYS_swapoff),
    deny("acct", libc::SYS_acct),
    deny("syslog", libc::SYS_syslog),
    deny("quotactl", libc::SYS_quotactl),
    deny("quotactl_fd", libc::SYS_quotactl_fd),
    deny("vhangup", libc::SYS_vhangup),
    deny("settimeofday", libc::SYS_settimeofday),
    deny("clock_settime", libc::SYS_clock_settime),
    deny("clock_adjtime", libc::SYS_clock_adjtime),
    deny("adjtimex", libc::SYS_adjtimex),
    deny("lookup_dcookie", libc::SYS_lookup_dcookie),
    #[cfg(target_arch = "x86_64")]
    deny("iopl", libc::SYS_iopl),
    #[cfg(target_arch = "x86_64")]
    deny("ioperm", libc::SYS_ioperm),
    #[cfg(target_arch = "x86_64")]
    deny("uselib", libc::SYS_uselib),
    #[cfg(target_arch = "x86_64")]
    deny("ustat", libc::SYS_ustat),
    #[cfg(target_arch = "x86_64")]
    deny("sysfs", libc::SYS_sysfs),
    #[cfg(target_arch = "x86_64")]
    deny("_sysctl", libc::SYS__sysctl),
    // Large kernel attack surface that sandboxed programs do not need.
    deny("bpf", libc::SYS_bpf),
    deny("perf_event_open", libc::SYS_perf_event_open),
    deny("userfaultfd", libc::SYS_userfaultfd),
    deny("io_uring_setup", libc::SYS_io_uring_setup),
    deny("io_uring_enter", libc::SYS_io_uring_enter),
    deny("io_uring_register", libc::SYS_io_uring_register),
    deny("fanotify_init", libc::SYS_fanotify_init),
    // Kernel keyrings are not namespaced: keys could leak between sessions and the host.
    deny("keyctl", libc::SYS_keyctl),
    deny("add_key", libc::SYS_add_key),
    deny("request_key", libc::SYS_request_key),
    // Reading, writing or comparing other processes' memory and files.
    deny("ptrace", libc::SYS_ptrace),
    deny("process_vm_readv", libc::SYS_process_vm_readv),
    deny("process_vm_writev", libc::SYS_process_vm_writev),
    deny("pidfd_getfd", libc::SYS_pidfd_getfd),
    deny("kcmp", libc::SYS_kcmp),
    // File handles bypass path lookup, hence the jail's root (the "shocker" escape).
    deny("open_by_handle_at", libc::SYS_open_by_handle_at),
    deny("name_to_handle_at", libc::SYS_name_to_handle_at),
    // Set-user-ID and set-group-ID bits: a file the jail makes or changes
    // lies on the host, where such a bit runs it with its owner's rights
    // (root's, for a root-owned work dir). Every call that sets a mode is
    // refused when the mode has either bit, whatever else it asks.
    #[cfg(target_arch = "x86_64")]
    mode_bits("chmod", libc::SYS_chmod, 1),
    mode_bits("fchmod", libc::SYS_fchmod, 1),
    mode_bits("fchmodat", libc::SYS_fchmodat, 2),
    mode_bits("fchmodat2", SYS_FCHMODAT2, 2),
    #[cfg(target_arch = "x86_64")]
    mode_bits("open", libc::SYS_open, 2),
    mode_bits("openat", libc::SYS_openat, 3),
    #[cfg(target_arch = "x86_64")]
    mode_bits("creat", libc::SYS_creat, 1),
    #[cfg(target_arch = "x86_64")]
    mode_bits("mknod", libc::SYS_mknod, 1),
    mode_bits("mknodat", libc::SYS_mknodat, 2),
    #[cfg(target_arch = "x86_64")]
    mode_bits("mkdir", libc::SYS_mkdir, 1),
    mode_bits("mkdirat", libc::SYS_mkdirat, 2),
    // openat2 passes its mode in memory, which seccomp cannot read. ENOSYS
    // makes callers fall back to openat, whose mode the rule above sees.
    Denied {
        name: "openat2",
        nr: libc::SYS_openat2,
        errno: libc::ENOSYS,
        when: When::Always,
    },
    // Socket families: only local (Unix), IP and netlink. The others are
    // either not confined by a network namespace (AF_VSOCK reaches the host
    // and its VMs) or large, rarely used kernel code (AF_ALG, AF_PACKET,
    // Bluetooth, CAN, TIPC, RDS, XDP, …).
    Denied {
        name: "socket",
        nr: libc::SYS_socket,
        errno: libc::EAFNOSUPPORT,
        when: When::NoneOf {
            arg: 0,
            values: SOCKET_FAMILIES,
        },
    },
    Denied {
        name: "socketpair",
        nr: libc::SYS_socketpair,
        errno: libc::EAFNOSUPPORT,
        when: When::NoneOf {
            arg: 0,
            values: &[libc::AF_UNIX as u32],
        },
    },
    Denied {
        name: "ioctl",
        nr: libc::SYS_ioctl,
        errno: libc::EPERM,
        when: When::OneOf {
            arg: 1,
            values: TTY_INJECTION,
        },
    },
    Denied {
        name: "personality",
        nr: libc::SYS_personality,
        errno: libc::EPERM,
        when: When::NoneOf {
            arg: 0,
            values: PERSONALITIES,
        },
    },
];

/// Names of the denied system calls on this architecture, in table order (some only with
/// certain arguments: see [`DENY_LIST`]).
pub fn denied_syscall_names() -> Vec<&'static str> {
    DENY_LIST.iter().map(|d| d.name).collect()
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("the seccomp deny-list is written for x86_64 and aarch64 only");

#[cfg(target_arch = "x86_64")]
const ARCH: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const ARCH: TargetArch = TargetArch::aarch64;

/// `AUDIT_ARCH_X86_64`: the architecture word the kernel reports for native 64-bit calls.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;

/// Builds the filter for the current architecture: the calls in [`DENY_LIST`] fail with their
/// errno, everything else is allowed, and a call made with another architecture's convention
/// (32-bit `int 0x80`, aarch32) kills the process, since the table's numbers do not apply
/// to it.
pub fn build_filter() -> anyhow::Result<BpfProgram> {
    build_from(DENY_LIST)
}

/// What a Landlock session may not do, on top of [`DENY_LIST`]: open Unix
/// sockets unless the profile says `host_unix_sockets = true` (without a
/// mount namespace every socket file of the host, `/run/docker.sock` or the
/// system bus, is a `connect` away, and Landlock does not confine
/// `connect`; connected `socketpair`s stay allowed), and IP sockets without
/// the network (Landlock's network rules cover TCP only, not UDP or raw
/// sockets).
pub fn landlock_extra(network: bool, root: bool, unix_sockets: bool) -> Vec<Denied> {
    const UNIX: &[u32] = &[libc::AF_UNIX as u32];
    const UNIX_AND_IP: &[u32] = &[
        libc::AF_UNIX as u32,
        libc::AF_INET as u32,
        libc::AF_INET6 as u32,
    ];
    // Connected pairs only: a datagram socket from `socketpair` can still
    // `sendto` any named socket of the host (`/dev/log`, a daemon's control
    // socket), and Landlock does not confine that either.
    const CONNECTED: &[u32] = &[
        libc::SOCK_STREAM as u32,
        (libc::SOCK_STREAM | libc::SOCK_CLOEXEC) as u32,
        (libc::SOCK_STREAM | libc::SOCK_NONBLOCK) as u32,
        (libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK) as u32,
        libc::SOCK_SEQPACKET as u32,
        (libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC) as u32,
        (libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK) as u32,
        (libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK) as u32,
    ];
    const PAIRS: Denied = Denied {
        name: "socketpair",
        nr: libc::SYS_socketpair,
        errno: libc::EPROTONOSUPPORT,
        when: When::NoneOf {
            arg: 1,
            values: CONNECTED,
        },
    };
    // Landlock does not cover file metadata: extended attributes (POSIX
    // ACLs among them, which could open a caller's files to other users)
    // are never set or removed; and a root caller, who owns the host's
    // system files, changes no file mode at all (its session could
    // otherwise `chmod 666 /etc/shadow`, which it cannot read but owns).
    const ALWAYS: When = When::Always;
    let refuse = |name, nr, when| Denied {
        name,
        nr,
        errno: libc::EPERM,
        when,
    };
    let eperm = |name, nr| refuse(name, nr, ALWAYS);
    const IP: &[u32] = &[libc::AF_INET as u32, libc::AF_INET6 as u32];
    let denied_families = match (network, unix_sockets) {
        (true, true) => None,
        (true, false) => Some(UNIX),
        (false, true) => Some(IP),
        (false, false) => Some(UNIX_AND_IP),
    };
    let mut rows: Vec<Denied> = denied_families
        .map(|values| Denied {
            name: "socket",
            nr: libc::SYS_socket,
            errno: libc::EAFNOSUPPORT,
            when: When::OneOf { arg: 0, values },
        })
        .into_iter()
        .collect();
    if !unix_sockets {
        rows.push(PAIRS);
    }
    rows.extend([
        eperm("setxattr", libc::SYS_setxattr),
        eperm("lsetxattr", libc::SYS_lsetxattr),
        eperm("fsetxattr", libc::SYS_fsetxattr),
        eperm("removexattr", libc::SYS_removexattr),
        eperm("lremovexattr", libc::SYS_lremovexattr),
        eperm("fremovexattr", libc::SYS_fremovexattr),
        eperm("setxattrat", SYS_SETXATTRAT),
        eperm("removexattrat", SYS_REMOVEXATTRAT),
    ]);
    // Inode flags and verity work on any file the session may read (Landlock
    // confines ioctl on devices only): no append-only, no-dump, sync or
    // project-id changes, and no read-only-for-ever verity on host files.
    rows.push(refuse(
        "ioctl",
        libc::SYS_ioctl,
        When::OneOf {
            arg: 1,
            values: INODE_IOCTLS,
        },
    ));
    // A lease on a file it may only read would let the session stall every
    // host process that opens it for writing (up to lease-break-time).
    rows.push(refuse(
        "fcntl",
        libc::SYS_fcntl,
        When::OneOf {
            arg: 1,
            values: &[libc::F_SETLEASE as u32],
        },
    ));
    if root {
        rows.extend([
            // Root owns the system files: a `chown` to itself needs no
            // capability and strips their set-id bits or changes their group.
            eperm("chown", libc::SYS_chown),
            eperm("fchown", libc::SYS_fchown),
            eperm("lchown", libc::SYS_lchown),
            eperm("fchownat", libc::SYS_fchownat),
            eperm("chmod", libc::SYS_chmod),
            eperm("fchmod", libc::SYS_fchmod),
            eperm("fchmodat", libc::SYS_fchmodat),
            eperm("fchmodat2", SYS_FCHMODAT2),
        ]);
        // Timestamps given explicitly (backdating a host file); "now" (a
        // NULL times pointer, what a plain `touch` asks) stays allowed.
        let explicit = |name, nr, arg| refuse(name, nr, When::NotNull { arg });
        rows.push(explicit("utimensat", libc::SYS_utimensat, 2));
        #[cfg(target_arch = "x86_64")]
        rows.extend([
            explicit("utimes", libc::SYS_utimes, 1),
            explicit("futimesat", libc::SYS_futimesat, 2),
            explicit("utime", libc::SYS_utime, 1),
        ]);
    }
    rows
}

/// `ioctl` requests that change a file's inode flags, extended attributes
/// (`struct fsxattr`: flags, project id), generation or verity:
/// `FS_IOC_SETFLAGS` and its 32-bit form, `FS_IOC_FSSETXATTR`,
/// `FS_IOC_SETVERSION` and its 32-bit form, ext4's own
/// `EXT4_IOC_SETVERSION` and its 32-bit form, `FS_IOC_ENABLE_VERITY`.
const INODE_IOCTLS: &[u32] = &[
    0x4008_6602,
    0x4004_6602,
    0x401c_5820,
    0x4008_7602,
    0x4004_7602,
    0x4008_6604,
    0x4004_6604,
    0x4080_6685,
];

/// `setxattrat` and `removexattrat` (Linux 6.13), which libc does not name
/// yet; the same numbers on x86_64 and aarch64 (unified syscall table).
const SYS_SETXATTRAT: c_long = 463;
const SYS_REMOVEXATTRAT: c_long = 466;

/// The second filter of a Landlock session (see [`landlock_extra`]); it is
/// installed after [`build_filter`]'s, and the kernel applies both.
pub fn build_landlock_filter(
    network: bool,
    root: bool,
    unix_sockets: bool,
) -> anyhow::Result<BpfProgram> {
    build_from(&landlock_extra(network, root, unix_sockets))
}

fn build_from(table: &[Denied]) -> anyhow::Result<BpfProgram> {
    let mut prog = x32_guard();
    // seccompiler gives one action to a whole filter, so compile one filter per errno and
    // chain them: a call no group denies falls through to the next group.
    let mut errnos: Vec<i32> = Vec::new();
    for d in table {
        if !errnos.contains(&d.errno) {
            errnos.push(d.errno);
        }
    }
    for (i, &errno) in errnos.iter().enumerate() {
        let mut group = compile_group(table, errno)?;
        if i + 1 < errnos.len() {
            fall_through_on_allow(&mut group);
        }
        prog.extend(group);
    }
    anyhow::ensure!(
        prog.len() <= libc::BPF_MAXINSNS as usize,
        "seccomp filter has {} instructions, over the kernel's limit",
        prog.len()
    );
    Ok(prog)
}

/// Compiles the rows of the deny-list that answer with `errno` into one stand-alone program.
fn compile_group(table: &[Denied], errno: i32) -> anyhow::Result<BpfProgram> {
    let mut rules = std::collections::BTreeMap::new();
    for d in table.iter().filter(|d| d.errno == errno) {
        let previous = rules.insert(d.nr, rules_for(d.when)?);
        anyhow::ensure!(previous.is_none(), "{} is listed twice", d.name);
    }
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        ARCH,
    )
    .context("building seccomp filter")?;
    BpfProgram::try_from(filter).context("compiling seccomp filter")
}

/// The seccompiler rules (any one matching denies) for a `When`; no rules means "always".
fn rules_for(when: When) -> anyhow::Result<Vec<SeccompRule>> {
    let low32 = |arg, op, value| SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value);
    Ok(match when {
        When::Always => Vec::new(),
        When::AnyBit { arg, bits } => (0..32)
            .map(|b| 1u64 << b)
            .filter(|bit| u64::from(bits) & bit != 0)
            .map(|bit| SeccompRule::new(vec![low32(arg, SeccompCmpOp::MaskedEq(bit), bit)?]))
            .collect::<Result<_, _>>()?,
        When::OneOf { arg, values } => values
            .iter()
            .map(|&v| SeccompRule::new(vec![low32(arg, SeccompCmpOp::Eq, v.into())?]))
            .collect::<Result<_, _>>()?,
        When::NotNull { arg } => vec![SeccompRule::new(vec![SeccompCondition::new(
            arg,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::Ne,
            0,
        )?])?],
        // One rule whose conditions must all hold: "not this value, and not that one, …".
        When::NoneOf { arg, values } => vec![SeccompRule::new(
            values
                .iter()
                .map(|&v| low32(arg, SeccompCmpOp::Ne, v.into()))
                .collect::<Result<_, _>>()?,
        )?],
    })
}

/// Turns every "allow" exit of a compiled group into a jump to the instruction just past the
/// group, so that the next group decides instead. A group's filter allows exactly the calls
/// it does not deny, so nothing else changes.
fn fall_through_on_allow(group: &mut [sock_filter]) {
    let len = group.len();
    for (i, ins) in group.iter_mut().enumerate() {
        if ins.code == (libc::BPF_RET | libc::BPF_K) as u16 && ins.k == libc::SECCOMP_RET_ALLOW {
            *ins = stmt(libc::BPF_JMP | libc::BPF_JA, (len - i - 1) as u32);
        }
    }
}

fn stmt(code: u32, k: u32) -> sock_filter {
    jump(code, k, 0, 0)
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// On x86_64 the same architecture word also covers x32 calls: the syscall number with bit 30
/// set. Their numbers are not in the table, so a deny-list would let `mount` through as x32
/// `mount`; refuse every such call as if the kernel had no x32 support.
#[cfg(target_arch = "x86_64")]
fn x32_guard() -> BpfProgram {
    const ARCH_OFFSET: u32 = 4; // offsetof(struct seccomp_data, arch)
    const NR_OFFSET: u32 = 0; // offsetof(struct seccomp_data, nr)
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    vec![
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, ARCH_OFFSET),
        jump(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            AUDIT_ARCH_X86_64,
            1,
            0,
        ),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, NR_OFFSET),
        jump(
            libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K,
            X32_SYSCALL_BIT,
            0,
            1,
        ),
        stmt(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        ),
    ]
}

/// aarch64 has no second calling convention under the same architecture word.
#[cfg(target_arch = "aarch64")]
fn x32_guard() -> BpfProgram {
    Vec::new()
}

// install() hands seccompiler's instructions to the kernel as `struct sock_filter`.
const _: () = assert!(
    std::mem::size_of::<sock_filter>() == std::mem::size_of::<libc::sock_filter>()
        && std::mem::align_of::<sock_filter>() == std::mem::align_of::<libc::sock_filter>()
);

/// Sets `no_new_privs` and loads `prog` into this process (all its threads), for good.
///
/// Async-signal-safe: only system calls, no allocation and no locks, so it may run between
/// `fork` and `exec` in a child of a multi-threaded parent. A multi-threaded caller whose
/// threads cannot all take the filter gets `ESRCH`; an empty or oversized program `EINVAL`.
pub fn install(prog: &BpfProgram) -> io::Result<()> {
    let len = match u16::try_from(prog.len()) {
        Ok(len) if len > 0 => len,
        _ => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
    };
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let fprog = libc::sock_fprog {
        len,
        // The kernel only reads the program; seccompiler's sock_filter has libc's layout
        // (checked at compile time above).
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `fprog` and the `len` instructions it points to outlive the call, and the kernel
    // copies them before returning.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_TSYNC,
            &fprog as *const libc::sock_fprog,
        )
    };
    match rc {
        0 => Ok(()),
        // With TSYNC a positive result is the id of a thread that could not be synchronized.
        rc if rc > 0 => Err(io::Error::from_raw_os_error(libc::ESRCH)),
        _ => Err(io::Error::last_os_error()),
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;

    use super::super::caps::testutil::{become_userns_root, errno, exec, run_in_child, Out};
    use super::*;

    /// The calls section 4 of the spec and the design require, present on this arch.
    const REQUIRED: &[&str] = &[
        "mount",
        "umount2",
        "pivot_root",
        "chroot",
        "swapon",
        "swapoff",
        "reboot",
        "kexec_load",
        "kexec_file_load",
        "init_module",
        "finit_module",
        "delete_module",
        "bpf",
        "perf_event_open",
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
        "keyctl",
        "add_key",
        "request_key",
        "unshare",
        "setns",
        "clone",
        "clone3",
        "open_by_handle_at",
        "name_to_handle_at",
        "userfaultfd",
        "fanotify_init",
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
        "acct",
        "settimeofday",
        "clock_settime",
        "clock_adjtime",
        "adjtimex",
        "syslog",
        "quotactl",
        "lookup_dcookie",
        "vhangup",
        "fsopen",
        "fsconfig",
        "fsmount",
        "fspick",
        "move_mount",
        "open_tree",
        "mount_setattr",
        "kcmp",
        "personality",
        "ioctl",
        #[cfg(target_arch = "x86_64")]
        "iopl",
        #[cfg(target_arch = "x86_64")]
        "ioperm",
        #[cfg(target_arch = "x86_64")]
        "uselib",
        #[cfg(target_arch = "x86_64")]
        "ustat",
        #[cfg(target_arch = "x86_64")]
        "sysfs",
        #[cfg(target_arch = "x86_64")]
        "_sysctl",
    ];

    #[cfg(target_arch = "x86_64")]
    const NATIVE_ARCH: u32 = AUDIT_ARCH_X86_64;
    #[cfg(target_arch = "aarch64")]
    const NATIVE_ARCH: u32 = 0xc000_00b7; // AUDIT_ARCH_AARCH64
    const AUDIT_ARCH_I386: u32 = 0x4000_0003;

    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;
    const fn errno_ret(e: i32) -> u32 {
        libc::SECCOMP_RET_ERRNO | e as u32
    }

    /// Runs a classic BPF program over a `struct seccomp_data`, as the kernel would.
    fn eval(prog: &[sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, arg) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&arg.to_le_bytes());
        }
        let (mut acc, mut pc) = (0u32, 0usize);
        loop {
            let ins = &prog[pc];
            pc += 1;
            let code = u32::from(ins.code);
            let jump_if = |cond: bool| usize::from(if cond { ins.jt } else { ins.jf });
            match code {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                    let k = ins.k as usize;
                    acc = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
                }
                c if c == libc::BPF_ALU | libc::BPF_AND | libc::BPF_K => acc &= ins.k,
                c if c == libc::BPF_JMP | libc::BPF_JA => pc += ins.k as usize,
                c if c == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K => {
                    pc += jump_if(acc == ins.k)
                }
                c if c == libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K => pc += jump_if(acc > ins.k),
                c if c == libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K => {
                    pc += jump_if(acc >= ins.k)
                }
                c if c == libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K => {
                    pc += jump_if(acc & ins.k != 0)
                }
                c if c == libc::BPF_RET | libc::BPF_K => return ins.k,
                c => panic!("unexpected BPF opcode {c:#x} at {}", pc - 1),
            }
        }
    }

    fn with_arg(arg: u8, value: u64) -> [u64; 6] {
        let mut args = [0; 6];
        args[usize::from(arg)] = value;
        args
    }

    #[test]
    fn deny_list_has_every_required_call_once() {
        let names = denied_syscall_names();
        for name in REQUIRED {
            assert!(names.contains(name), "{name} is not denied");
        }
        for (i, d) in DENY_LIST.iter().enumerate() {
            assert!(
                DENY_LIST[..i]
                    .iter()
                    .all(|e| e.name != d.name && e.nr != d.nr),
                "{} listed twice",
                d.name
            );
        }
    }

    #[test]
    fn the_landlock_filter_judges_pointers_by_all_64_bits_and_pairs_by_type() {
        let prog = build_landlock_filter(false, true, false).unwrap();
        let run = |nr: c_long, args| eval(&prog, NATIVE_ARCH, nr as u32, args);
        let eperm = errno_ret(libc::EPERM);
        // utimensat(fd, NULL, times, 0): "now" allowed, explicit times not,
        // even at an address whose low 32 bits are zero.
        assert_eq!(run(libc::SYS_utimensat, [3, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(
            run(libc::SYS_utimensat, [3, 0, 0x7fff_0000, 0, 0, 0]),
            eperm
        );
        assert_eq!(run(libc::SYS_utimensat, [3, 0, 1 << 32, 0, 0, 0]), eperm);
        assert_eq!(run(libc::SYS_fchmod, [3, 0o644, 0, 0, 0, 0]), eperm);
        let stream = (libc::SOCK_STREAM | libc::SOCK_CLOEXEC) as u64;
        let dgram = libc::SOCK_DGRAM as u64;
        let unix = libc::AF_UNIX as u64;
        assert_eq!(run(libc::SYS_socketpair, [unix, stream, 0, 0, 0, 0]), ALLOW);
        assert_ne!(run(libc::SYS_socketpair, [unix, dgram, 0, 0, 0, 0]), ALLOW);
        assert_ne!(run(libc::SYS_socket, [unix, stream, 0, 0, 0, 0]), ALLOW);
        assert_ne!(
            run(libc::SYS_socket, [libc::AF_INET as u64, dgram, 0, 0, 0, 0]),
            ALLOW
        );
        // A regular user keeps chmod and times; with host_unix_sockets, sockets.
        let user = build_landlock_filter(true, false, true).unwrap();
        let run = |nr: c_long, args| eval(&user, NATIVE_ARCH, nr as u32, args);
        assert_eq!(run(libc::SYS_fchmod, [3, 0o644, 0, 0, 0, 0]), ALLOW);
        assert_eq!(
            run(libc::SYS_utimensat, [3, 0, 0x7fff_0000, 0, 0, 0]),
            ALLOW
        );
        assert_eq!(run(libc::SYS_socket, [unix, stream, 0, 0, 0, 0]), ALLOW);
        assert_ne!(run(libc::SYS_setxattr, [0; 6]), ALLOW);
    }

    #[test]
    fn filter_decides_as_the_table_says() {
        let prog = build_filter().unwrap();
        let run = |nr: c_long, args| eval(&prog, NATIVE_ARCH, nr as u32, args);
        for d in DENY_LIST {
            let denied = errno_ret(d.errno);
            match d.when {
                When::Always => assert_eq!(run(d.nr, [0; 6]), denied, "{}", d.name),
                When::NotNull { arg } => {
                    assert_eq!(run(d.nr, with_arg(arg, 0)), ALLOW, "{}", d.name);
                    assert_eq!(run(d.nr, with_arg(arg, 1 << 32)), denied, "{}", d.name);
                }
                When::AnyBit { arg, bits } if bits == SET_ID_BITS => {
                    for mode in [0o4755u64, 0o2755, 0o6755, 0o4000, 0o2000, 0o104755] {
                        assert_eq!(
                            run(d.nr, with_arg(arg, mode)),
                            denied,
                            "{} {mode:o}",
                            d.name
                        );
                        // mode_t is 32-bit: high bits the kernel ignores do not help.
                        let high = mode | 1 << 40;
                        assert_eq!(
                            run(d.nr, with_arg(arg, high)),
                            denied,
                            "{} {mode:o}",
                            d.name
                        );
                    }
                    // Every other mode, sticky bit included, stays allowed.
                    for mode in [0u64, 0o644, 0o755, 0o777, 0o1777, 0o100644] {
                        assert_eq!(run(d.nr, with_arg(arg, mode)), ALLOW, "{} {mode:o}", d.name);
                    }
                }
                When::AnyBit { arg, bits } => {
                    let sigchld = libc::SIGCHLD as u64;
                    for bit in (0..32).map(|b| 1u32 << b).filter(|b| bits & b != 0) {
                        let flags = u64::from(bit) | sigchld;
                        assert_eq!(run(d.nr, with_arg(arg, flags)), denied, "{bit:#x}");
                        // The kernel ignores clone's high 32 bits, so must the filter.
                        let high = flags | 1 << 40;
                        assert_eq!(run(d.nr, with_arg(arg, high)), denied, "{bit:#x}");
                    }
                    // fork and pthread_create stay allowed.
                    let thread = (libc::CLONE_VM
                        | libc::CLONE_FS
                        | libc::CLONE_FILES
                        | libc::CLONE_SIGHAND
                        | libc::CLONE_THREAD
                        | libc::CLONE_SYSVSEM
                        | libc::CLONE_SETTLS
                        | libc::CLONE_PARENT_SETTID
                        | libc::CLONE_CHILD_CLEARTID) as u64;
                    assert_eq!(run(d.nr, with_arg(arg, sigchld)), ALLOW);
                    assert_eq!(run(d.nr, with_arg(arg, thread)), ALLOW);
                }
                When::OneOf { arg, values } => {
                    for &v in values {
                        assert_eq!(run(d.nr, with_arg(arg, v.into())), denied, "{v:#x}");
                        let high = u64::from(v) | 1 << 32;
                        assert_eq!(run(d.nr, with_arg(arg, high)), denied, "{v:#x}");
                    }
                    let tcgets = libc::TCGETS;
                    assert_eq!(run(d.nr, with_arg(arg, tcgets)), ALLOW, "{}", d.name);
                }
                When::NoneOf { arg, values } => {
                    for &v in values {
                        assert_eq!(run(d.nr, with_arg(arg, v.into())), ALLOW, "{v:#x}");
                    }
                    let refused: &[i32] = if d.name == "personality" {
                        &[libc::READ_IMPLIES_EXEC, libc::ADDR_NO_RANDOMIZE]
                    } else {
                        &[
                            libc::AF_VSOCK,
                            libc::AF_PACKET,
                            libc::AF_ALG,
                            libc::AF_UNSPEC,
                        ]
                    };
                    for &v in refused {
                        assert_eq!(run(d.nr, with_arg(arg, v as u64)), denied, "{v:#x}");
                        let high = v as u64 | 1 << 32;
                        assert_eq!(run(d.nr, with_arg(arg, high)), denied, "{v:#x}");
                    }
                }
            }
        }
        for nr in [
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_openat,
            libc::SYS_execve,
            libc::SYS_wait4,
            libc::SYS_prctl,
            libc::SYS_seccomp,
        ] {
            assert_eq!(run(nr, [0; 6]), ALLOW, "syscall {nr}");
        }
        for family in [
            libc::AF_UNIX,
            libc::AF_INET,
            libc::AF_INET6,
            libc::AF_NETLINK,
        ] {
            let args = with_arg(0, family as u64);
            assert_eq!(run(libc::SYS_socket, args), ALLOW, "socket family {family}");
        }
        // Another calling convention is killed, not judged by the wrong table.
        assert_eq!(eval(&prog, AUDIT_ARCH_I386, 21, [0; 6]), KILL);
        #[cfg(target_arch = "x86_64")]
        {
            let x32_mount = 0x4000_0000 | libc::SYS_mount;
            assert_eq!(run(x32_mount, [0; 6]), errno_ret(libc::ENOSYS));
            assert_eq!(
                run(0x4000_0000 | libc::SYS_read, [0; 6]),
                errno_ret(libc::ENOSYS)
            );
        }
    }

    #[test]
    fn install_rejects_an_empty_program_without_side_effects() {
        let e = install(&Vec::new()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
        assert_eq!(
            super::super::caps::status_line("Seccomp").as_deref(),
            Some("0")
        );
    }

    /// A call the filter should refuse, made from a child that is root in its own user
    /// and mount namespaces. `control`: without the filter the kernel answers differently
    /// there, so the unfiltered run proves the filter is what refused.
    struct Probe {
        name: &'static str,
        errno: i32,
        control: bool,
        call: fn() -> i64,
    }

    /// `syscall(2)` with up to six integer arguments; the probes pass pointers only to live
    /// locals or null.
    fn sys(nr: c_long, a: [u64; 6]) -> i64 {
        // SAFETY: every probe passes null, small integers, or pointers to its own live locals
        // with the sizes the call expects.
        unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) }
    }

    /// A pointer argument the kernel only reads.
    fn ptr<T>(p: &T) -> u64 {
        p as *const T as u64
    }

    /// A pointer argument the kernel may write through.
    fn ptr_mut<T>(p: &mut T) -> u64 {
        p as *mut T as u64
    }

    /// In a forked child: runs `call` in a grandchild (for calls whose success would change
    /// the child), giving back its result code or -1.
    fn in_grandchild(call: fn() -> i64) -> i64 {
        // SAFETY: fork in a single-threaded child; the grandchild only makes raw syscalls
        // and leaves with _exit.
        match unsafe { libc::fork() } {
            0 => {
                let rc = call();
                let code = if rc >= 0 { 0 } else { errno() };
                // SAFETY: ends the grandchild without running atexit handlers.
                unsafe { libc::_exit(code) }
            }
            -1 => -1,
            pid => wait_code(pid).map_or(-1, |code| {
                // Hand the grandchild's errno back through errno.
                // SAFETY: __errno_location gives this thread's errno slot.
                unsafe { *libc::__errno_location() = code };
                if code == 0 {
                    0
                } else {
                    -1
                }
            }),
        }
    }

    /// Waits for `pid`; its exit code, or None if a signal ended it.
    fn wait_code(pid: libc::pid_t) -> Option<i32> {
        let mut status = 0;
        // SAFETY: waits for our own child into a live local.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        (rc == pid && libc::WIFEXITED(status)).then(|| libc::WEXITSTATUS(status))
    }

    /// clone(flags) with fork semantics; a grandchild that gets made leaves at once.
    fn clone_with(flags: u64) -> i64 {
        let rc = sys(libc::SYS_clone, [flags, 0, 0, 0, 0, 0]);
        if rc == 0 {
            // SAFETY: the new process leaves at once.
            unsafe { libc::_exit(0) }
        }
        if rc > 0 {
            wait_code(rc as libc::pid_t);
        }
        rc
    }

    fn dev_null() -> u64 {
        // SAFETY: NUL-terminated path.
        unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) as u64 }
    }

    /// Closes `rc` if it is a descriptor a probe got.
    fn close_fd(rc: i64) -> i64 {
        if rc >= 0 {
            // SAFETY: rc is a descriptor the probe just opened.
            unsafe { libc::close(rc as i32) };
        }
        rc
    }

    fn cs(s: &std::ffi::CStr) -> u64 {
        s.as_ptr() as u64
    }

    const KEYCTL_GET_KEYRING_ID: u64 = 0;
    const KEY_SPEC_SESSION_KEYRING: u64 = -3i64 as u64;
    const UFFD_USER_MODE_ONLY: u64 = 1;
    const KCMP_VM: u64 = 1;
    const FAN_REPORT_FID: u64 = 0x200;
    const SYSLOG_ACTION_SIZE_BUFFER: u64 = 10;

    const PROBES: &[Probe] = &[
        Probe {
            name: "mount tmpfs",
            errno: libc::EPERM,
            control: true,
            call: || {
                let args = [cs(c"none"), cs(c"/tmp"), cs(c"tmpfs"), 0, 0, 0];
                sys(libc::SYS_mount, args)
            },
        },
        Probe {
            name: "umount2",
            errno: libc::EPERM,
            control: true,
            call: || {
                sys(
                    libc::SYS_umount2,
                    [cs(c"/tmp"), libc::MNT_DETACH as u64, 0, 0, 0, 0],
                )
            },
        },
        Probe {
            name: "fsopen",
            errno: libc::EPERM,
            control: true,
            call: || close_fd(sys(libc::SYS_fsopen, [cs(c"tmpfs"), 0, 0, 0, 0, 0])),
        },
        Probe {
            name: "open_tree",
            errno: libc::EPERM,
            control: true,
            call: || {
                let args = [libc::AT_FDCWD as u64, cs(c"/"), 0, 0, 0, 0];
                close_fd(sys(libc::SYS_open_tree, args))
            },
        },
        Probe {
            name: "open_tree_attr",
            errno: libc::EPERM,
            control: true,
            call: || {
                let args = [libc::AT_FDCWD as u64, cs(c"/"), 0, 0, 0, 0];
                close_fd(sys(SYS_OPEN_TREE_ATTR, args))
            },
        },
        Probe {
            name: "chroot",
            errno: libc::EPERM,
            control: true,
            call: || sys(libc::SYS_chroot, [cs(c"/"), 0, 0, 0, 0, 0]),
        },
        Probe {
            name: "clone3",
            errno: libc::ENOSYS,
            control: true,
            call: || sys(libc::SYS_clone3, [0; 6]),
        },
        Probe {
            name: "clone CLONE_NEWUSER",
            errno: libc::EPERM,
            control: true,
            call: || clone_with((libc::CLONE_NEWUSER | libc::SIGCHLD) as u64),
        },
        Probe {
            name: "clone CLONE_NEWNET",
            errno: libc::EPERM,
            control: true,
            call: || clone_with((libc::CLONE_NEWNET | libc::SIGCHLD) as u64),
        },
        Probe {
            name: "clone CLONE_NEWNS with high bits set",
            errno: libc::EPERM,
            control: true,
            call: || clone_with((libc::CLONE_NEWNS | libc::SIGCHLD) as u64 | 1 << 40),
        },
        Probe {
            name: "unshare CLONE_NEWUSER",
            errno: libc::EPERM,
            control: true,
            call: || {
                in_grandchild(|| {
                    sys(
                        libc::SYS_unshare,
                        [libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0],
                    )
                })
            },
        },
        Probe {
            name: "setns",
            errno: libc::EPERM,
            control: true,
            call: || sys(libc::SYS_setns, [-1i64 as u64, 0, 0, 0, 0, 0]),
        },
        Probe {
            name: "ptrace attach own child",
            errno: libc::EPERM,
            control: true,
            call: || {
                // SAFETY: fork in a single-threaded child; the grandchild only sleeps.
                let pid = unsafe { libc::fork() };
                if pid == 0 {
                    loop {
                        // SAFETY: waits for the signal that kills it.
                        unsafe { libc::pause() };
                    }
                }
                let rc = sys(
                    libc::SYS_ptrace,
                    [libc::PTRACE_ATTACH as u64, pid as u64, 0, 0, 0, 0],
                );
                let e = errno();
                // SAFETY: kills and reaps our own grandchild.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                wait_code(pid);
                // SAFETY: restores the probe's errno for the caller.
                unsafe { *libc::__errno_location() = e };
                rc
            },
        },
        Probe {
            name: "ptrace attach parent",
            errno: libc::EPERM,
            control: false,
            call: || {
                // SAFETY: getppid has no arguments.
                let parent = unsafe { libc::getppid() } as u64;
                sys(
                    libc::SYS_ptrace,
                    [libc::PTRACE_ATTACH as u64, parent, 0, 0, 0, 0],
                )
            },
        },
        Probe {
            name: "process_vm_readv",
            errno: libc::EPERM,
            control: true,
            call: || {
                let (src, mut dst) = (7u64, 0u64);
                let local = libc::iovec {
                    iov_base: (&mut dst as *mut u64).cast(),
                    iov_len: 8,
                };
                let remote = libc::iovec {
                    iov_base: (&src as *const u64).cast_mut().cast(),
                    iov_len: 8,
                };
                // SAFETY: getpid has no arguments.
                let me = unsafe { libc::getpid() } as u64;
                sys(
                    libc::SYS_process_vm_readv,
                    [me, ptr(&local), 1, ptr(&remote), 1, 0],
                )
            },
        },
        Probe {
            name: "kcmp",
            errno: libc::EPERM,
            control: true,
            call: || {
                // SAFETY: getpid has no arguments.
                let me = unsafe { libc::getpid() } as u64;
                sys(libc::SYS_kcmp, [me, me, KCMP_VM, 0, 0, 0])
            },
        },
        Probe {
            name: "pidfd_getfd",
            errno: libc::EPERM,
            control: true,
            call: || {
                // SAFETY: getpid has no arguments.
                let me = unsafe { libc::getpid() } as u64;
                let pidfd = sys(libc::SYS_pidfd_open, [me, 0, 0, 0, 0, 0]);
                let rc = close_fd(sys(libc::SYS_pidfd_getfd, [pidfd as u64, 0, 0, 0, 0, 0]));
                let e = errno();
                close_fd(pidfd);
                // SAFETY: restores the probe's errno for the caller.
                unsafe { *libc::__errno_location() = e };
                rc
            },
        },
        Probe {
            name: "ioctl TIOCSTI",
            errno: libc::EPERM,
            control: true,
            call: || {
                let (fd, c) = (dev_null(), b'x');
                let rc = sys(libc::SYS_ioctl, [fd, libc::TIOCSTI, ptr(&c), 0, 0, 0]);
                let e = errno();
                close_fd(fd as i64);
                // SAFETY: restores the probe's errno for the caller.
                unsafe { *libc::__errno_location() = e };
                rc
            },
        },
        Probe {
            name: "ioctl TIOCSTI with high bits set",
            errno: libc::EPERM,
            control: true,
            call: || {
                let (fd, c) = (dev_null(), b'x');
                let rc = sys(
                    libc::SYS_ioctl,
                    [fd, libc::TIOCSTI | 1 << 32, ptr(&c), 0, 0, 0],
                );
                let e = errno();
                close_fd(fd as i64);
                // SAFETY: restores the probe's errno for the caller.
                unsafe { *libc::__errno_location() = e };
                rc
            },
        },
        Probe {
            name: "ioctl TIOCLINUX",
            errno: libc::EPERM,
            control: true,
            call: || {
                let (fd, mut sub) = (dev_null(), 0u8);
                let rc = sys(
                    libc::SYS_ioctl,
                    [fd, libc::TIOCLINUX, ptr_mut(&mut sub), 0, 0, 0],
                );
                let e = errno();
                close_fd(fd as i64);
                // SAFETY: restores the probe's errno for the caller.
                unsafe { *libc::__errno_location() = e };
                rc
            },
        },
        Probe {
            name: "keyctl",
            errno: libc::EPERM,
            control: true,
            call: || {
                sys(
                    libc::SYS_keyctl,
                    [KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0, 0, 0, 0],
                )
            },
        },
        Probe {
            name: "personality READ_IMPLIES_EXEC",
            errno: libc::EPERM,
            control: true,
            call: || {
                let rc = sys(
                    libc::SYS_personality,
                    [libc::READ_IMPLIES_EXEC as u64, 0, 0, 0, 0, 0],
                );
                if rc >= 0 {
                    sys(libc::SYS_personality, [rc as u64, 0, 0, 0, 0, 0]);
                }
                rc
            },
        },
        Probe {
            name: "bpf",
            errno: libc::EPERM,
            control: true,
            call: || sys(libc::SYS_bpf, [9999, 0, 0, 0, 0, 0]),
        },
        Probe {
            name: "perf_event_open",
            errno: libc::EPERM,
            control: true,
            call: || {
                close_fd(sys(
                    libc::SYS_perf_event_open,
                    [0, 0, -1i64 as u64, -1i64 as u64, 0, 0],
                ))
            },
        },
        Probe {
            name: "userfaultfd",
            errno: libc::EPERM,
            control: true,
            call: || {
                close_fd(sys(
                    libc::SYS_userfaultfd,
                    [UFFD_USER_MODE_ONLY | libc::O_CLOEXEC as u64, 0, 0, 0, 0, 0],
                ))
            },
        },
        Probe {
            name: "io_uring_setup",
            errno: libc::EPERM,
            control: true,
            call: || close_fd(sys(libc::SYS_io_uring_setup, [1, 0, 0, 0, 0, 0])),
        },
        Probe {
            name: "fanotify_init",
            errno: libc::EPERM,
            control: true,
            call: || {
                close_fd(sys(
                    libc::SYS_fanotify_init,
                    [FAN_REPORT_FID, 0, 0, 0, 0, 0],
                ))
            },
        },
        Probe {
            name: "name_to_handle_at",
            errno: libc::EPERM,
            control: true,
            call: || {
                let (mut handle, mut mount_id) = ([0u32; 4], 0i32);
                let args = [
                    libc::AT_FDCWD as u64,
                    cs(c"/"),
                    ptr_mut(&mut handle),
                    ptr_mut(&mut mount_id),
                    0,
                    0,
                ];
                sys(libc::SYS_name_to_handle_at, args)
            },
        },
        Probe {
            name: "open_by_handle_at",
            errno: libc::EPERM,
            control: false,
            call: || {
                let handle = [8u32, 1, 0, 0];
                let args = [
                    libc::AT_FDCWD as u64,
                    ptr(&handle),
                    libc::O_RDONLY as u64,
                    0,
                    0,
                    0,
                ];
                close_fd(sys(libc::SYS_open_by_handle_at, args))
            },
        },
        Probe {
            name: "settimeofday(NULL, NULL)",
            errno: libc::EPERM,
            control: false,
            call: || sys(libc::SYS_settimeofday, [0; 6]),
        },
        Probe {
            name: "clock_settime(CLOCK_REALTIME, NULL)",
            errno: libc::EPERM,
            control: true,
            call: || {
                sys(
                    libc::SYS_clock_settime,
                    [libc::CLOCK_REALTIME as u64, 0, 0, 0, 0, 0],
                )
            },
        },
        Probe {
            name: "adjtimex query",
            errno: libc::EPERM,
            control: true,
            call: || {
                // SAFETY: timex is plain data; all-zero is a valid read-only query.
                let mut tx: libc::timex = unsafe { std::mem::zeroed() };
                sys(libc::SYS_adjtimex, [ptr_mut(&mut tx), 0, 0, 0, 0, 0])
            },
        },
        Probe {
            name: "syslog size",
            errno: libc::EPERM,
            control: false,
            call: || sys(libc::SYS_syslog, [SYSLOG_ACTION_SIZE_BUFFER, 0, 0, 0, 0, 0]),
        },
        Probe {
            name: "swapon",
            errno: libc::EPERM,
            control: false,
            call: || sys(libc::SYS_swapon, [cs(c"/nonexistent"), 0, 0, 0, 0, 0]),
        },
        Probe {
            name: "init_module",
            errno: libc::EPERM,
            control: false,
            call: || sys(libc::SYS_init_module, [0, 0, cs(c""), 0, 0, 0]),
        },
        Probe {
            name: "lookup_dcookie",
            errno: libc::EPERM,
            control: true,
            call: || sys(libc::SYS_lookup_dcookie, [0; 6]),
        },
        #[cfg(target_arch = "x86_64")]
        Probe {
            name: "x32 mount",
            errno: libc::ENOSYS,
            control: false,
            call: || sys(0x4000_0000 | libc::SYS_mount, [0; 6]),
        },
    ];

    /// Runs the probes in a forked child. With `filtered`, each must fail with its errno;
    /// without, each `control` probe must not (so the filter is what made the difference).
    fn probe_all(out: Out, filtered: bool) {
        for p in PROBES.iter().filter(|p| filtered || p.control) {
            let rc = (p.call)();
            let e = errno();
            let refused = rc == -1 && e == p.errno;
            out.check(p.name, refused == filtered, rc, e);
        }
    }

    #[test]
    fn filter_refuses_even_with_full_capabilities() {
        let prog = build_filter().unwrap();
        run_in_child(|out| {
            if !become_userns_root(out, libc::CLONE_NEWNS) {
                return 1;
            }
            if !out.expect_io("install", install(&prog)) {
                return 1;
            }
            probe_all(out, true);
            0
        })
        .assert_ok();
    }

    /// Control for the test above: the same probes, same namespaces, no filter.
    #[test]
    fn probes_get_through_without_the_filter() {
        run_in_child(|out| {
            if !become_userns_root(out, libc::CLONE_NEWNS) {
                return 1;
            }
            probe_all(out, false);
            0
        })
        .assert_ok();
    }

    /// Set when a child runs this test binary again under the filter, for
    /// `threads_and_spawn_work_under_filter`.
    const HELPER_ENV: &str = "DELTA_SESSIONS_SECCOMP_HELPER";

    /// The whole jail sequence (user namespace root, drop_all, install) in a child: every set
    /// is empty, the filter is on, the probes are refused, and ordinary work still runs.
    #[test]
    fn jail_sequence_locks_down_and_ordinary_work_runs() {
        let prog = build_filter().unwrap();
        let exe = CString::new(
            std::env::current_exe()
                .unwrap()
                .into_os_string()
                .into_encoded_bytes(),
        )
        .unwrap();
        let test_name = format!("{}::threads_and_spawn_work_under_filter", module_path!());
        let test_name = CString::new(test_name.split_once("::").unwrap().1).unwrap();
        let helper = [
            exe.as_ptr(),
            c"--exact".as_ptr(),
            test_name.as_ptr(),
            c"--ignored".as_ptr(),
            c"--test-threads=2".as_ptr(),
            std::ptr::null(),
        ];
        let helper_env = CString::new(format!("{HELPER_ENV}=1")).unwrap();
        let helper_envp = [helper_env.as_ptr(), std::ptr::null()];
        let true_argv = [c"/bin/true".as_ptr(), std::ptr::null()];
        let no_env = [std::ptr::null()];

        let report = run_in_child(|out| {
            if !become_userns_root(out, 0) {
                return 1;
            }
            if !out.expect_io("drop_all", super::super::caps::drop_all())
                || !out.expect_io("install", install(&prog))
            {
                return 1;
            }
            out.status("jailed");
            probe_all(out, true);
            ordinary_work(out);
            for (what, argv, envp) in [
                ("execve /bin/true", &true_argv[..], &no_env[..]),
                (
                    "threads and posix_spawn under the filter",
                    &helper[..],
                    &helper_envp[..],
                ),
            ] {
                // SAFETY: fork in a single-threaded child; the grandchild only execs.
                let pid = unsafe { libc::fork() };
                if pid == 0 {
                    exec(out, argv, envp);
                    // SAFETY: leaves the grandchild whose exec failed.
                    unsafe { libc::_exit(127) }
                }
                let code = if pid > 0 { wait_code(pid) } else { None };
                out.check(what, code == Some(0), code.unwrap_or(-1).into(), 0);
            }
            0
        });
        report.assert_ok();
        for field in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert_eq!(
                report.field("jailed", field),
                Some("0000000000000000"),
                "{field}"
            );
        }
        assert_eq!(report.field("jailed", "NoNewPrivs"), Some("1"));
        assert_eq!(report.field("jailed", "Seccomp"), Some("2"));
        assert!(
            report.text.contains("1 passed"),
            "helper did not run:\n{}",
            report.text
        );
    }

    /// Everyday calls that must keep working in the jail.
    fn ordinary_work(out: Out) {
        // fork + wait (clone without namespace flags).
        // SAFETY: fork in a single-threaded child; the grandchild leaves at once.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: leaves the grandchild.
            unsafe { libc::_exit(7) }
        }
        let code = if pid > 0 { wait_code(pid) } else { None };
        out.check("fork and wait", code == Some(7), pid.into(), errno());

        let fd = dev_null() as i32;
        out.expect_ok("open /dev/null", fd.into(), errno());
        let mut buf = [0u8; 4];
        // SAFETY: writes from and reads into live locals through our own descriptor.
        let (w, r) = unsafe {
            (
                libc::write(fd, b"data".as_ptr().cast(), 4),
                libc::read(fd, buf.as_mut_ptr().cast(), buf.len()),
            )
        };
        out.check(
            "write and read /dev/null",
            w == 4 && r == 0,
            w as i64,
            errno(),
        );
        // An ioctl other than the injecting ones reaches the driver (which says ENOTTY).
        let rc = sys(
            libc::SYS_ioctl,
            [fd as u64, libc::TCGETS, ptr_mut(&mut [0u8; 64]), 0, 0, 0],
        );
        let e = errno();
        out.check(
            "ioctl TCGETS reaches the kernel",
            rc == -1 && e == libc::ENOTTY,
            rc,
            e,
        );
        close_fd(fd.into());

        let rc = sys(libc::SYS_personality, [0xffff_ffff, 0, 0, 0, 0, 0]);
        out.expect_ok("personality query", rc, errno());
        let rc = close_fd(sys(
            libc::SYS_socket,
            [libc::AF_UNIX as u64, libc::SOCK_STREAM as u64, 0, 0, 0, 0],
        ));
        out.expect_ok("socket", rc, errno());
    }

    /// Run by `jail_sequence_locks_down_and_ordinary_work_runs` in a jailed child: glibc's
    /// pthread_create and posix_spawn try clone3 first and must fall back to clone on ENOSYS.
    #[test]
    #[ignore = "run under the filter by jail_sequence_locks_down_and_ordinary_work_runs"]
    fn threads_and_spawn_work_under_filter() {
        if std::env::var_os(HELPER_ENV).is_none() {
            return;
        }
        assert_eq!(
            super::super::caps::status_line("Seccomp").as_deref(),
            Some("2")
        );
        assert_eq!(std::thread::spawn(|| 42).join().unwrap(), 42);
        let status = std::process::Command::new("/bin/true").status().unwrap();
        assert!(status.success());
    }
}
