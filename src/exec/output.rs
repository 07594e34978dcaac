//! Bounded capture of a command's output: the first and the last bytes are
//! kept, the middle is counted and dropped, so memory stays bounded whatever
//! the command prints.

use std::collections::VecDeque;
use std::io::Write;

/// Head-and-tail buffer of at most `cap` bytes.
#[derive(Debug)]
pub struct CappedBuffer {
    head_cap: usize,
    tail_cap: usize,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    dropped: u64,
}

impl CappedBuffer {
    pub fn new(cap: usize) -> CappedBuffer {
        let head_cap = cap / 2;
        CappedBuffer {
            head_cap,
            tail_cap: cap - head_cap,
            head: Vec::new(),
            tail: VecDeque::new(),
            dropped: 0,
        }
    }

    pub fn push(&mut self, mut data: &[u8]) {
        if self.head.len() < self.head_cap {
            // Exact reservations: doubling growth would overshoot the cap and,
            // with 50 MB of output, hold several times the kept bytes.
            if self.head.capacity() == 0 {
                self.head.reserve_exact(self.head_cap);
            }
            let take = data.len().min(self.head_cap - self.head.len());
            self.head.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        if data.is_empty() {
            return;
        }
        if self.tail.capacity() < self.tail_cap {
            self.tail.reserve_exact(self.tail_cap - self.tail.len());
        }
        if data.len() >= self.tail_cap {
            self.dropped += (self.tail.len() + data.len() - self.tail_cap) as u64;
            self.tail.clear();
            self.tail.extend(&data[data.len() - self.tail_cap..]);
            return;
        }
        let overflow = (self.tail.len() + data.len()).saturating_sub(self.tail_cap);
        self.tail.drain(..overflow);
        self.dropped += overflow as u64;
        self.tail.extend(data);
    }

    /// Bytes that were dropped from the middle (with the pieces of
    /// characters cut there).
    pub fn dropped(&self) -> u64 {
        let (head_cut, tail_skip) = self.boundary_cuts();
        self.dropped + (head_cut + tail_skip) as u64
    }

    /// When the middle was dropped: how many bytes to cut off the end of the
    /// head and the start of the tail so that both edges of the marker fall
    /// on UTF-8 character boundaries (half a character would show as a
    /// replacement character).
    fn boundary_cuts(&self) -> (usize, usize) {
        if self.dropped == 0 {
            return (0, 0);
        }
        let tail_skip = self
            .tail
            .iter()
            .take(3)
            .take_while(|&&b| b & 0xC0 == 0x80)
            .count();
        (incomplete_suffix(&self.head), tail_skip)
    }

    /// The kept bytes, with a marker line where the middle was dropped.
    pub fn into_bytes(self) -> Vec<u8> {
        if self.dropped == 0 && self.tail.is_empty() {
            return self.head;
        }
        let mut out = Vec::with_capacity(self.head.len() + 80 + self.tail.len());
        let dropped = self.dropped();
        let (head_cut, tail_skip) = self.boundary_cuts();
        out.extend_from_slice(&self.head[..self.head.len() - head_cut]);
        drop(self.head);
        if dropped > 0 {
            if !out.ends_with(b"\n") {
                out.push(b'\n');
            }
            let _ = writeln!(
                out,
                "[... delta-sessions dropped {dropped} bytes of output here ...]",
            );
        }
        out.extend(self.tail.iter().skip(tail_skip));
        out
    }
}

/// Length of an unfinished UTF-8 sequence at the end of `bytes` (0 if the
/// last character is whole, or if the bytes are not UTF-8 there anyway).
fn incomplete_suffix(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(3) {
        let b = bytes[bytes.len() - back];
        if b & 0xC0 == 0x80 {
            continue; // a continuation byte: look further back for the lead
        }
        let needed = match b {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => return 0,
        };
        return if back < needed { back } else { 0 };
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cut_falls_on_character_boundaries() {
        // 'é' is 2 bytes, '€' 3: a cap of 7 splits both.
        let mut b = CappedBuffer::new(7);
        b.push("aé€".repeat(20).as_bytes());
        let dropped = b.dropped();
        let bytes = b.into_bytes();
        let text = String::from_utf8(bytes.clone()).expect("valid UTF-8 on both sides of the cut");
        assert!(text.contains(&format!("dropped {dropped} bytes")), "{text}");
        let kept = bytes.len() - text.lines().nth(1).unwrap().len() - 2;
        assert_eq!(kept as u64 + dropped, 120, "{text}");
    }

    #[test]
    fn small_output_is_kept_whole() {
        let mut b = CappedBuffer::new(100);
        b.push(b"hello ");
        b.push(b"world");
        assert_eq!(b.dropped(), 0);
        assert_eq!(b.into_bytes(), b"hello world");
    }

    #[test]
    fn keeps_head_and_tail_and_counts_the_rest() {
        let mut b = CappedBuffer::new(10);
        for chunk in [&b"0123"[..], b"456789", b"abcdefghij", b"KLMNO"] {
            b.push(chunk);
        }
        assert_eq!(b.dropped(), 25 - 10);
        let text = String::from_utf8(b.into_bytes()).unwrap();
        assert!(text.starts_with("01234\n"), "{text}");
        assert!(text.ends_with("KLMNO"), "{text}");
        assert!(text.contains("dropped 15 bytes"), "{text}");
    }

    #[test]
    fn a_single_huge_write_keeps_its_end() {
        let mut b = CappedBuffer::new(8);
        let data: Vec<u8> = (0..100u8).collect();
        b.push(&data);
        assert_eq!(b.dropped(), 92);
        let out = b.into_bytes();
        assert_eq!(&out[..4], &[0, 1, 2, 3]);
        assert_eq!(&out[out.len() - 4..], &[96, 97, 98, 99]);
    }
}
