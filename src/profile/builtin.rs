//! The built-in profiles: the files of `profiles/`, compiled into the binary.

/// Name and TOML text of every built-in profile, in listing order.
pub const BUILTINS: &[(&str, &str)] = &[
    ("default", include_str!("../../profiles/default.toml")),
    ("untrusted", include_str!("../../profiles/untrusted.toml")),
    ("network", include_str!("../../profiles/network.toml")),
    ("readonly", include_str!("../../profiles/readonly.toml")),
    ("ci", include_str!("../../profiles/ci.toml")),
    ("unconfined", include_str!("../../profiles/unconfined.toml")),
];

/// The names of [`BUILTINS`], in the same order.
pub const NAMES: &[&str] = &[
    "default",
    "untrusted",
    "network",
    "readonly",
    "ci",
    "unconfined",
];

/// The TOML text of a built-in profile.
pub fn text(name: &str) -> Option<&'static str> {
    BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// The text of the `default` profile, which supplies every key a file omits.
pub fn default_text() -> &'static str {
    BUILTINS[0].1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_table() {
        let names: Vec<&str> = BUILTINS.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, NAMES);
        assert_eq!(BUILTINS[0].0, "default");
    }

    #[test]
    fn every_file_starts_with_a_comment_naming_it() {
        for (name, text) in BUILTINS {
            assert!(
                text.starts_with(&format!("# {name}: for ")),
                "profiles/{name}.toml must start with a comment saying what it is for"
            );
        }
    }
}
