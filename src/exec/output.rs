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

    /// Bytes that were dropped from the middle.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The kept bytes, with a marker line where the middle was dropped.
    pub fn into_bytes(self) -> Vec<u8> {
        if self.dropped == 0 && self.tail.is_empty() {
            return self.head;
        }
        let mut out = Vec::with_capacity(self.head.len() + 80 + self.tail.len());
        out.extend_from_slice(&self.head);
        drop(self.head);
        if self.dropped > 0 {
            if !out.ends_with(b"\n") {
                out.push(b'\n');
            }
            let _ = writeln!(
                out,
                "[... delta-sessions dropped {} bytes of output here ...]",
                self.dropped
            );
        }
        let (a, b) = self.tail.as_slices();
        out.extend_from_slice(a);
        out.extend_from_slice(b);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
