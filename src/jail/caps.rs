//! TEMPORARY STUB
pub fn drop_all() -> std::io::Result<()> {
    Ok(())
}
