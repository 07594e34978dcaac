//! Session identifiers: `sess_` followed by 12 lowercase hex digits.
//!
//! Every id that arrives from a user is parsed here before any path is built
//! from it, so `../x`, `/etc` or an empty string can never name a directory.

use std::fmt;

const PREFIX: &str = "sess_";
const HEX_DIGITS: usize = 12;

/// A validated session id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(String);

impl SessionId {
    /// A fresh id from the kernel's secure random source.
    pub fn generate() -> std::io::Result<SessionId> {
        let mut bytes = [0u8; HEX_DIGITS / 2];
        let mut filled = 0;
        while filled < bytes.len() {
            // SAFETY: the pointer and length describe the unfilled tail of `bytes`.
            let n = unsafe {
                libc::getrandom(bytes[filled..].as_mut_ptr().cast(), bytes.len() - filled, 0)
            };
            if n < 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            filled += n as usize;
        }
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(SessionId(format!("{PREFIX}{hex}")))
    }

    /// Parses a user-supplied id, explaining what a valid one looks like.
    pub fn parse(text: &str) -> Result<SessionId, String> {
        if Self::is_valid(text) {
            Ok(SessionId(text.to_string()))
        } else {
            let shown: String = text.chars().take(64).collect();
            Err(format!(
                "Invalid session id {shown:?}: expected \"sess_\" followed by 12 lowercase hex digits, as printed by `delta-sessions start`"
            ))
        }
    }

    /// Whether `text` has the exact shape of an id (used when listing directories).
    pub fn is_valid(text: &str) -> bool {
        text.len() == PREFIX.len() + HEX_DIGITS
            && text.starts_with(PREFIX)
            && text[PREFIX.len()..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let a = SessionId::generate().unwrap();
        let b = SessionId::generate().unwrap();
        assert!(SessionId::is_valid(a.as_str()), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn rejects_paths_and_malformed_ids() {
        for bad in [
            "",
            "../x",
            "/etc",
            "sess_",
            "sess_0123456789a",
            "sess_0123456789abc",
            "sess_0123456789AB",
            "sess_0123456789a/",
            "sess_../../etc/x",
            "SESS_0123456789ab",
            "sess_0123456789ag",
        ] {
            assert!(SessionId::parse(bad).is_err(), "accepted {bad:?}");
        }
        assert!(SessionId::parse("sess_0123456789ab").is_ok());
    }

    #[test]
    fn error_names_the_expected_shape() {
        let err = SessionId::parse("../etc").unwrap_err();
        assert!(err.contains("Invalid session id"), "{err}");
        assert!(err.contains("sess_"), "{err}");
    }
}
