//! Reading the command text of an exec.

use anyhow::{bail, Context, Result};
use std::io::Read;

/// The largest command accepted on stdin.
pub const MAX_COMMAND_BYTES: usize = 4 << 20;

/// The command from the positional argument, or else from stdin.
pub fn read_command(positional: Option<String>) -> Result<String> {
    let bytes = match positional {
        Some(text) => text.into_bytes(),
        None => {
            let mut buf = Vec::new();
            std::io::stdin()
                .lock()
                .take(MAX_COMMAND_BYTES as u64 + 1)
                .read_to_end(&mut buf)
                .context("cannot read the command from stdin")?;
            buf
        }
    };
    validate(bytes)
}

fn validate(bytes: Vec<u8>) -> Result<String> {
    if bytes.len() > MAX_COMMAND_BYTES {
        bail!(
            "Command too large: more than {} MiB (put big scripts in a file in the work dir and run that)",
            MAX_COMMAND_BYTES >> 20
        );
    }
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => bail!(
            "Command is not valid UTF-8 (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ),
    };
    if text.trim().is_empty() {
        bail!("No command provided (stdin is empty)");
    }
    if text.contains('\0') {
        bail!("Command contains a NUL byte");
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_empty_whitespace_binary_and_huge() {
        assert!(validate(b"".to_vec())
            .unwrap_err()
            .to_string()
            .contains("No command provided"));
        assert!(validate(b" \n\t ".to_vec()).is_err());
        assert!(validate(vec![b'e', 0xff, b'x'])
            .unwrap_err()
            .to_string()
            .contains("UTF-8"));
        assert!(validate(vec![b'a'; MAX_COMMAND_BYTES + 1])
            .unwrap_err()
            .to_string()
            .contains("too large"));
        assert_eq!(validate(b"echo hi".to_vec()).unwrap(), "echo hi");
    }
}
