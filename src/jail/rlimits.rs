//! TEMPORARY STUB
#[derive(Debug, Clone)]
pub struct RlimitStep;
pub fn plan(_l: &crate::profile::Limits) -> Vec<RlimitStep> {
    vec![]
}
pub fn apply(_s: &[RlimitStep]) -> std::io::Result<()> {
    Ok(())
}
