//! The JSON records kept in a session directory.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Lifecycle of a session as recorded in `metadata.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    Terminated,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Terminated => "terminated",
        }
    }
}

/// How to find (and recognise) the holder process of a live jail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderRecord {
    /// Host pid of the holder.
    pub pid: i32,
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22): a pid
    /// alone may have been reused after the holder died.
    pub start_time: u64,
    /// Whether the holder runs in its own namespaces (false for `unconfined`).
    pub jailed: bool,
    /// The session's cgroup directories, when the host let us make them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cgroups: Vec<std::path::PathBuf>,
}

/// `metadata.json`: who the session is and how it is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub session_id: String,
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    pub created_at: String,
    pub last_executed_at: Option<String>,
    pub status: Status,
    pub work_dir: PathBuf,
    pub execution_count: u64,
    pub profile: String,
    /// What sandboxes the session: `jail`, `landlock` or `none` (never
    /// `auto`, which `start` resolves). Absent in sessions recorded before
    /// Landlock mode existed, which were jails or `none` as `holder.jailed` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<crate::profile::Isolation>,
    pub holder: Option<HolderRecord>,
    /// Size of history.log when `execution_count` was last settled (see
    /// `SessionDir::count_exec`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_bytes: Option<u64>,
    /// The last exec was counted when it started and its history line is
    /// the first past `history_bytes`, once written.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
    /// How many times a dead jail was rebuilt by a later exec.
    #[serde(default)]
    pub jail_restarts: u64,
    #[serde(default)]
    pub ended_at: Option<String>,
}

/// Shell-only state that must be re-created by sourcing text (bash).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShellState {
    pub functions: String,
    pub aliases: String,
}

/// `state.json`: what the next exec starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub cwd: PathBuf,
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<ShellState>,
}

/// One line of `history.log`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub timestamp: String,
    pub command: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub command_truncated: bool,
    pub exit_code: i32,
    pub duration_ms: u64,
    pub cwd: PathBuf,
    pub timed_out: bool,
}
