//! Reads the output of bash's `export -p`.
//!
//! One builtin call lists every exported variable, which is several times
//! cheaper than walking the variable table once per name prefix. Its format
//! (bash 4.4 to 5.2): one entry per variable,
//!
//! ```text
//! declare -x NAME="double-quoted value"     (escapes: \" \\ \$ \`)
//! declare -x NAME=$'ANSI-C value'           (when the value holds control characters)
//! declare -x NAME                           (exported, but never set)
//! declare -rx NAME="..."                    (other attributes beside x)
//! export NAME="..."                         (in POSIX mode)
//! ```
//!
//! followed by a newline; values may contain raw newlines. Anything that
//! does not follow the format makes the whole parse fail, so a surprise in
//! some bash version keeps the previous state instead of storing garbage.

use std::collections::BTreeMap;

/// Parses `export -p` output into NAME → value (variables without a value,
/// and arrays, which bash never exports, are left out).
pub fn parse(text: &[u8]) -> Option<BTreeMap<String, String>> {
    let mut p = Parser { s: text, i: 0 };
    let mut vars = BTreeMap::new();
    while p.i < p.s.len() {
        let array = if p.eat(b"declare -") {
            let flags = p.take_while(|c| c.is_ascii_alphabetic());
            if !flags.contains(&b'x') || !p.eat(b" ") {
                return None;
            }
            flags.contains(&b'a') || flags.contains(&b'A')
        } else if p.eat(b"export ") {
            false
        } else {
            return None;
        };
        let name = p
            .take_while(|c| c == b'_' || c.is_ascii_alphanumeric())
            .to_vec();
        let name = String::from_utf8(name).ok()?;
        if name.is_empty() {
            return None;
        }
        if p.eat(b"\n") {
            continue;
        }
        if !p.eat(b"=") {
            return None;
        }
        let value = if array { p.compound()? } else { p.word()? };
        if !p.eat(b"\n") {
            return None;
        }
        if !array {
            vars.insert(name, String::from_utf8_lossy(&value).into_owned());
        }
    }
    Some(vars)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, lit: &[u8]) -> bool {
        if self.s[self.i..].starts_with(lit) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.i;
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    /// One shell word made of quoted and bare parts, up to the newline.
    fn word(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            match self.peek()? {
                b'\n' => return Some(out),
                b'"' => {
                    self.i += 1;
                    self.double_quoted(&mut out)?;
                }
                b'\'' => {
                    self.i += 1;
                    let part = self.take_while(|c| c != b'\'').to_vec();
                    self.eat(b"'").then_some(())?;
                    out.extend(part);
                }
                b'$' if self.s.get(self.i + 1) == Some(&b'\'') => {
                    self.i += 2;
                    self.ansi_c(&mut out)?;
                }
                b'\\' => {
                    out.push(*self.s.get(self.i + 1)?);
                    self.i += 2;
                }
                c => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    fn double_quoted(&mut self, out: &mut Vec<u8>) -> Option<()> {
        loop {
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(());
                }
                b'\\' => {
                    let next = *self.s.get(self.i + 1)?;
                    if matches!(next, b'"' | b'\\' | b'$' | b'`' | b'\n') {
                        if next != b'\n' {
                            out.push(next);
                        }
                        self.i += 2;
                    } else {
                        out.push(b'\\');
                        self.i += 1;
                    }
                }
                c => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    fn ansi_c(&mut self, out: &mut Vec<u8>) -> Option<()> {
        loop {
            match self.peek()? {
                b'\'' => {
                    self.i += 1;
                    return Some(());
                }
                b'\\' => {
                    self.i += 1;
                    let c = self.peek()?;
                    self.i += 1;
                    match c {
                        b'a' => out.push(0x07),
                        b'b' => out.push(0x08),
                        b'e' | b'E' => out.push(0x1b),
                        b'f' => out.push(0x0c),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'v' => out.push(0x0b),
                        b'\\' | b'\'' | b'"' | b'?' => out.push(c),
                        b'0'..=b'7' => {
                            let mut v = u32::from(c - b'0');
                            for _ in 0..2 {
                                match self.peek() {
                                    Some(d @ b'0'..=b'7') => {
                                        v = v * 8 + u32::from(d - b'0');
                                        self.i += 1;
                                    }
                                    _ => break,
                                }
                            }
                            out.push(v as u8);
                        }
                        b'x' => {
                            let digits = self.take_while(|d| d.is_ascii_hexdigit());
                            let digits = &digits[..digits.len().min(2)];
                            let v =
                                u8::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()?;
                            out.push(v);
                        }
                        b'c' => {
                            let ctl = self.peek()?;
                            self.i += 1;
                            out.push(ctl & 0x1f);
                        }
                        other => {
                            out.push(b'\\');
                            out.push(other);
                        }
                    }
                }
                c => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    /// Skips an array value `( [k]="v" ... )`, quote-aware.
    fn compound(&mut self) -> Option<Vec<u8>> {
        if !self.eat(b"(") {
            return None;
        }
        let mut sink = Vec::new();
        loop {
            match self.peek()? {
                b')' => {
                    self.i += 1;
                    return Some(Vec::new());
                }
                b'"' => {
                    self.i += 1;
                    self.double_quoted(&mut sink)?;
                }
                b'$' if self.s.get(self.i + 1) == Some(&b'\'') => {
                    self.i += 2;
                    self.ansi_c(&mut sink)?;
                }
                _ => self.i += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn parses_each_form() {
        let text = b"declare -x A=\"plain\"\ndeclare -x B=\"q\\\"d\\$e\\`f\\\\g\nline2\"\ndeclare -x C=$'a\\001b\\nc\\'d\\\\e'\ndeclare -x D\ndeclare -rx E=\"ro\"\nexport F=\"posix\"\ndeclare -ax G=([0]=\"x)\" [1]=\"y\")\ndeclare -x H=\"\"\n";
        let v = parse(text).unwrap();
        assert_eq!(v["A"], "plain");
        assert_eq!(v["B"], "q\"d$e`f\\g\nline2");
        assert_eq!(v["C"], "a\u{1}b\nc'd\\e");
        assert!(!v.contains_key("D"));
        assert_eq!(v["E"], "ro");
        assert_eq!(v["F"], "posix");
        assert!(!v.contains_key("G"));
        assert_eq!(v["H"], "");
    }

    #[test]
    fn rejects_what_it_does_not_know() {
        for bad in [
            &b"garbage\n"[..],
            b"declare -x A=\"unterminated\n",
            b"declare -r A=\"not exported\"\n",
            b"declare -x =\"noname\"\n",
            b"declare -x A=\"no newline\"",
        ] {
            assert!(parse(bad).is_none(), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse(b"").unwrap().len(), 0);
    }

    /// The real bash agrees with the parser on hard values (checked against `env -0`).
    #[test]
    fn round_trips_through_the_installed_bash() {
        let script = r#"export P1=$'tab\there' P2='quote" and \ back' P3=$'nl\nx' P4='$HOME `x`' P5=$'\x7f\x1b[0m' P6='ünï' P7='a=b=c'; export -p"#;
        let Ok(out) = Command::new("bash")
            .arg("-c")
            .arg(script)
            .env_clear()
            .output()
        else {
            return; // no bash on this machine
        };
        let v = parse(&out.stdout).expect("export -p output parses");
        assert_eq!(v["P1"], "tab\there");
        assert_eq!(v["P2"], "quote\" and \\ back");
        assert_eq!(v["P3"], "nl\nx");
        assert_eq!(v["P4"], "$HOME `x`");
        assert_eq!(v["P5"], "\u{7f}\u{1b}[0m");
        assert_eq!(v["P6"], "ünï");
        assert_eq!(v["P7"], "a=b=c");
    }
}
