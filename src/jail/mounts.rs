//! TEMPORARY STUB
use std::path::{Path, PathBuf};
pub struct RootfsSpec {
    pub new_root: PathBuf,
    pub work_dir: PathBuf,
    pub work_dir_writable: bool,
    pub tmp_source: PathBuf,
    pub home_source: PathBuf,
    pub home_target: PathBuf,
    pub hidden: Vec<PathBuf>,
    pub extra_read_only: Vec<PathBuf>,
    pub extra_read_write: Vec<PathBuf>,
    pub masked: Vec<PathBuf>,
    pub host_network: bool,
}
pub struct RealHost;
pub trait HostView {}
impl HostView for RealHost {}
pub struct MountStep;
pub fn plan(_s: &RootfsSpec, _h: &dyn HostView) -> Result<Vec<MountStep>, String> {
    let _ = Path::new("/");
    Ok(vec![])
}
pub fn apply(_s: &[MountStep]) -> std::io::Result<()> {
    Ok(())
}
