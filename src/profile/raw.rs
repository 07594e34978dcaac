//! The profile file as written: every key optional, unknown keys rejected.
//!
//! A file is parsed into [`RawProfile`], laid over the `default` profile with
//! [`RawProfile::over`], then checked and resolved by `validate`. Errors of
//! the TOML layer are turned into one line that names the key (see
//! [`parse`]).

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    pub description: Option<String>,
    pub isolation: Option<String>,
    pub network: Option<String>,
    pub hostname: Option<String>,
    pub host_unix_sockets: Option<bool>,
    pub filesystem: Option<RawFilesystem>,
    pub limits: Option<RawLimits>,
    pub env: Option<RawEnv>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFilesystem {
    pub work_dir: Option<String>,
    pub read_only: Option<Vec<String>>,
    pub read_write: Option<Vec<String>>,
    pub masked: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub timeout: Option<Scalar>,
    pub kill_grace: Option<Scalar>,
    pub cpu: Option<Scalar>,
    pub memory: Option<Scalar>,
    pub processes: Option<Scalar>,
    pub file_size: Option<Scalar>,
    pub open_files: Option<Scalar>,
    pub output: Option<Scalar>,
    pub disk: Option<Scalar>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnv {
    pub set: Option<BTreeMap<String, String>>,
    pub pass: Option<Vec<String>>,
}

/// A limit as written: `"512MiB"`, `"30s"`, `"unlimited"` or a whole number.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Int(i64),
    Text(String),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Int(n) => write!(f, "{n}"),
            Scalar::Text(t) => write!(f, "{t:?}"),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl Visitor<'_> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string such as \"512MiB\" or \"30s\", or a whole number")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                i64::try_from(v)
                    .map(Scalar::Int)
                    .map_err(|_| E::custom(format!("{v} is too large")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Text(v.to_string()))
            }
        }
        d.deserialize_any(ScalarVisitor)
    }
}

impl RawProfile {
    /// `self` laid over `base`: every key set in `self` wins; tables merge
    /// key by key; lists and `env.set` are replaced as a whole.
    pub fn over(self, base: RawProfile) -> RawProfile {
        RawProfile {
            description: self.description.or(base.description),
            isolation: self.isolation.or(base.isolation),
            network: self.network.or(base.network),
            hostname: self.hostname.or(base.hostname),
            host_unix_sockets: self.host_unix_sockets.or(base.host_unix_sockets),
            filesystem: Some(
                self.filesystem
                    .unwrap_or_default()
                    .over(base.filesystem.unwrap_or_default()),
            ),
            limits: Some(
                self.limits
                    .unwrap_or_default()
                    .over(base.limits.unwrap_or_default()),
            ),
            env: Some(
                self.env
                    .unwrap_or_default()
                    .over(base.env.unwrap_or_default()),
            ),
        }
    }
}

impl RawFilesystem {
    fn over(self, base: RawFilesystem) -> RawFilesystem {
        RawFilesystem {
            work_dir: self.work_dir.or(base.work_dir),
            read_only: self.read_only.or(base.read_only),
            read_write: self.read_write.or(base.read_write),
            masked: self.masked.or(base.masked),
        }
    }
}

impl RawLimits {
    fn over(self, base: RawLimits) -> RawLimits {
        RawLimits {
            timeout: self.timeout.or(base.timeout),
            kill_grace: self.kill_grace.or(base.kill_grace),
            cpu: self.cpu.or(base.cpu),
            memory: self.memory.or(base.memory),
            processes: self.processes.or(base.processes),
            file_size: self.file_size.or(base.file_size),
            open_files: self.open_files.or(base.open_files),
            output: self.output.or(base.output),
            disk: self.disk.or(base.disk),
        }
    }
}

impl RawEnv {
    fn over(self, base: RawEnv) -> RawEnv {
        RawEnv {
            set: self.set.or(base.set),
            pass: self.pass.or(base.pass),
        }
    }
}

/// Parses a profile file. The error is one line without the file name:
/// `unknown key "limits.memroy" (…)`, `limits.cpu: invalid type: …`, or
/// `line 3, column 7: …` for TOML syntax errors.
pub fn parse(text: &str) -> Result<RawProfile, String> {
    toml::from_str::<RawProfile>(text).map_err(|e| describe(text, e.message(), e.span()))
}

fn describe(text: &str, message: &str, span: Option<Range<usize>>) -> String {
    let message = one_line(message);
    let path = span.as_ref().and_then(|s| key_path_at(text, s.start));
    if let Some(rest) = message.strip_prefix("unknown field `") {
        // serde: "unknown field `x`, expected one of `a`, `b`" / "there are no fields".
        let (field, tail) = rest.split_once('`').unwrap_or((rest, ""));
        let key = path.unwrap_or_else(|| field.to_string());
        let known = tail
            .trim_start_matches(", ")
            .replace('`', "")
            .replace("expected one of ", "")
            .replace("expected ", "");
        return if known.is_empty() {
            format!("unknown key {key:?}")
        } else {
            format!("unknown key {key:?} (known keys here: {known})")
        };
    }
    match (path, span) {
        (Some(path), _) => format!("{path}: {message}"),
        (None, Some(span)) => {
            let (line, column) = line_column(text, span.start);
            format!("line {line}, column {column}: {message}")
        }
        (None, None) => message,
    }
}

/// Joins a multi-line message into one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, before[start..].chars().count() + 1)
}

/// The dotted path of the key or value at byte `offset`, e.g. `limits.memory`.
fn key_path_at(text: &str, offset: usize) -> Option<String> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let mut path = Vec::new();
    if find_in_table(doc.as_table(), offset, &mut path) {
        Some(path.join("."))
    } else {
        None
    }
}

fn contains(span: Option<Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|s| s.start <= offset && offset < s.end.max(s.start + 1))
}

fn find_in_table(table: &dyn toml_edit::TableLike, offset: usize, path: &mut Vec<String>) -> bool {
    for (name, item) in table.iter() {
        let key_span = table.key(name).and_then(|k| k.span());
        path.push(name.to_string());
        if contains(key_span, offset) || find_in_item(item, offset, path) {
            return true;
        }
        path.pop();
    }
    false
}

fn find_in_item(item: &toml_edit::Item, offset: usize, path: &mut Vec<String>) -> bool {
    match item {
        toml_edit::Item::Table(t) => find_in_table(t, offset, path) || contains(t.span(), offset),
        toml_edit::Item::Value(v) => find_in_value(v, offset, path),
        toml_edit::Item::ArrayOfTables(a) => {
            a.iter().any(|t| find_in_table(t, offset, path)) || contains(a.span(), offset)
        }
        toml_edit::Item::None => false,
    }
}

fn find_in_value(value: &toml_edit::Value, offset: usize, path: &mut Vec<String>) -> bool {
    if !contains(value.span(), offset) {
        return false;
    }
    if let toml_edit::Value::InlineTable(t) = value {
        // The deepest key wins; the table itself if no key inside matches.
        let _ = find_in_table(t, offset, path);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_none() {
        assert_eq!(parse("").unwrap(), RawProfile::default());
        assert_eq!(parse("# only a comment\n").unwrap(), RawProfile::default());
    }

    #[test]
    fn scalars_accept_strings_and_integers() {
        let p = parse("[limits]\nprocesses = 10\nmemory = \"1GiB\"\n").unwrap();
        let l = p.limits.unwrap();
        assert_eq!(l.processes, Some(Scalar::Int(10)));
        assert_eq!(l.memory, Some(Scalar::Text("1GiB".into())));
        let err = parse("[limits]\ncpu = 1.5\n").unwrap_err();
        assert!(
            err.starts_with("limits.cpu: invalid type: floating point"),
            "{err}"
        );
    }

    #[test]
    fn unknown_key_names_its_path() {
        let err = parse("[limits]\nmemroy = \"1GiB\"\n").unwrap_err();
        assert!(
            err.starts_with("unknown key \"limits.memroy\" (known keys here: timeout, "),
            "{err}"
        );
        let err = parse("colour = 1\n").unwrap_err();
        assert!(err.starts_with("unknown key \"colour\""), "{err}");
        let err = parse("limits.memroy = 1\n").unwrap_err();
        assert!(err.starts_with("unknown key \"limits.memroy\""), "{err}");
        let err = parse("filesystem = { work_dir = \"rw\", extra = [] }\n").unwrap_err();
        assert!(err.starts_with("unknown key \"filesystem.extra\""), "{err}");
        let err = parse("[[limits]]\ncpu = 1\n").unwrap_err();
        assert!(err.starts_with("limits: "), "{err}");
    }

    #[test]
    fn type_errors_name_the_key() {
        let err = parse("hostname = 5\n").unwrap_err();
        assert!(err.starts_with("hostname: invalid type: integer"), "{err}");
        let err = parse("[env]\nset = { A = 1 }\n").unwrap_err();
        assert!(err.starts_with("env.set.A: invalid type: integer"), "{err}");
        let err = parse("[filesystem]\nread_only = \"/x\"\n").unwrap_err();
        assert!(
            err.starts_with("filesystem.read_only: invalid type"),
            "{err}"
        );
        let err = parse("[filesystem]\nread_only = [\"/x\", 3]\n").unwrap_err();
        assert!(
            err.starts_with("filesystem.read_only: invalid type"),
            "{err}"
        );
    }

    #[test]
    fn syntax_errors_give_line_and_column() {
        let err = parse("description = \"x\"\n[limits\n").unwrap_err();
        assert!(err.starts_with("line 2, column "), "{err}");
        assert!(!err.contains('\n'));
        let err = parse("a = 1\na = 2\n").unwrap_err();
        assert!(err.contains("duplicate key"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn overlay_merges_tables_and_replaces_lists() {
        let base = parse(
            "network = \"none\"\n[limits]\ncpu = \"1s\"\nmemory = \"1GiB\"\n[env]\nset = { A = \"1\" }\npass = [\"X\"]\n",
        )
        .unwrap();
        let top = parse("[limits]\ncpu = \"2s\"\n[env]\nset = { B = \"2\" }\n").unwrap();
        let merged = top.over(base);
        assert_eq!(merged.network.as_deref(), Some("none"));
        let l = merged.limits.unwrap();
        assert_eq!(l.cpu, Some(Scalar::Text("2s".into())));
        assert_eq!(l.memory, Some(Scalar::Text("1GiB".into())));
        let env = merged.env.unwrap();
        assert_eq!(env.set.unwrap().keys().collect::<Vec<_>>(), ["B"]);
        assert_eq!(env.pass.unwrap(), ["X"]);
    }

    #[test]
    fn line_column_counts_characters() {
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("é=\n", 2), (1, 2));
        assert_eq!(line_column("", 10), (1, 1));
    }
}
