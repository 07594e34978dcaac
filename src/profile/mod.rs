//! TEMPORARY STUB (replaced by the profile module).
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Isolation {
    Jail,
    None,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Network {
    None,
    Host,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Access {
    ReadWrite,
    ReadOnly,
}
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Filesystem {
    pub work_dir: Access,
    pub read_only: Vec<PathBuf>,
    pub read_write: Vec<PathBuf>,
    pub masked: Vec<PathBuf>,
}
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    pub timeout_ms: u64,
    pub kill_grace_ms: u64,
    pub cpu_seconds: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub processes: Option<u64>,
    pub file_size_bytes: Option<u64>,
    pub open_files: Option<u64>,
    pub output_bytes: u64,
}
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvPolicy {
    pub set: BTreeMap<String, String>,
    pub pass: Vec<String>,
}
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub name: String,
    pub description: String,
    pub isolation: Isolation,
    pub filesystem: Filesystem,
    pub network: Network,
    pub limits: Limits,
    pub env: EnvPolicy,
    pub hostname: String,
}
impl Profile {
    pub fn builtin_names() -> &'static [&'static str] {
        &["default", "unconfined"]
    }
    pub fn load(name: &str) -> Result<Profile, String> {
        let iso = match name {
            "default" => Isolation::Jail,
            "unconfined" => Isolation::None,
            _ => return Err(format!("unknown profile {name:?}")),
        };
        Ok(Profile {
            name: name.into(),
            description: String::new(),
            isolation: iso,
            filesystem: Filesystem {
                work_dir: Access::ReadWrite,
                read_only: vec![],
                read_write: vec![],
                masked: vec![],
            },
            network: if iso == Isolation::Jail {
                Network::None
            } else {
                Network::Host
            },
            limits: Limits {
                timeout_ms: 300_000,
                kill_grace_ms: 2000,
                cpu_seconds: None,
                memory_bytes: None,
                processes: None,
                file_size_bytes: None,
                open_files: None,
                output_bytes: 1 << 20,
            },
            env: EnvPolicy {
                set: BTreeMap::new(),
                pass: vec![],
            },
            hostname: "sandbox".into(),
        })
    }
    pub fn summary(&self) -> String {
        self.description.clone()
    }
}
