//! Mutations in the manner of libFuzzer's default mutators, stacked a few at a time on an input
//! taken from the working corpus.

/// xorshift64*: small, fast and deterministic, so a seed reproduces a run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; zero is replaced).
    pub fn new(seed: u64) -> Self {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

/// Numbers at the edges of integer types and parsers' limits, written as text.
const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "2",
    "255",
    "256",
    "65535",
    "65536",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775809",
    "1e308",
    "1e999",
    "0.0000001",
    "00000000000000000000000000000001",
];

/// Bytes that change how text formats are read.
const BYTES: &[u8] = b"\x00\xff\x7f\x80\n\r\t \"'`\\{}[]<>:,=#-.0/@";

pub(crate) struct Mutator<'a> {
    pub dictionary: &'a [Vec<u8>],
    pub max_len: usize,
}

impl Mutator<'_> {
    /// A new input: one from `corpus`, with one to eight mutations.
    pub fn mutate(&self, rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
        let mut b = corpus
            .get(rng.below(corpus.len()))
            .cloned()
            .unwrap_or_default();
        let rounds = 1 + (rng.next_u64().trailing_zeros() as usize).min(7);
        for _ in 0..rounds {
            self.once(rng, corpus, &mut b);
        }
        b.truncate(self.max_len);
        b
    }

    fn once(&self, rng: &mut Rng, corpus: &[Vec<u8>], b: &mut Vec<u8>) {
        let len = b.len();
        let at = rng.below(len + 1);
        match rng.below(12) {
            0 if len > 0 => {
                let i = rng.below(len);
                b[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                b[i] = if rng.below(2) == 0 {
                    BYTES[rng.below(BYTES.len())]
                } else {
                    rng.next_u64() as u8
                };
            }
            2 => b.insert(at, BYTES[rng.below(BYTES.len())]),
            3 if len > 0 => {
                let end = (at + 1 + rng.below(16)).min(len);
                b.drain(at.min(end)..end);
            }
            4 if len > 0 => {
                // Duplicate a chunk somewhere else.
                let from = rng.below(len);
                let n = 1 + rng.below((len - from).min(64));
                let chunk = b[from..from + n].to_vec();
                let to = rng.below(len + 1);
                b.splice(to..to, chunk);
            }
            5 if !corpus.is_empty() => {
                // Splice a chunk of another input in, replacing a chunk of this one.
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let from = rng.below(other.len());
                    let n = 1 + rng.below((other.len() - from).min(256));
                    let replace = rng.below((len - at).min(n) + 1);
                    b.splice(at..at + replace, other[from..from + n].iter().copied());
                }
            }
            6 if !self.dictionary.is_empty() => {
                let t = &self.dictionary[rng.below(self.dictionary.len())];
                b.splice(at..at, t.iter().copied());
            }
            7 => {
                // Replace a run of digits (or insert at random) with an edge number.
                let n = NUMBERS[rng.below(NUMBERS.len())].as_bytes();
                match digit_run(b, at) {
                    Some((s, e)) => {
                        b.splice(s..e, n.iter().copied());
                    }
                    None => {
                        b.splice(at..at, n.iter().copied());
                    }
                }
            }
            8 if len > 0 => b.truncate(rng.below(len)),
            9 if len > 1 => {
                // Swap two chunks.
                let n = 1 + rng.below((len / 2).min(32));
                let x = rng.below(len - n + 1);
                let y = rng.below(len - n + 1);
                if x + n <= y || y + n <= x {
                    for k in 0..n {
                        b.swap(x + k, y + k);
                    }
                }
            }
            10 => {
                // A long run of one byte: length limits and quadratic loops.
                let c = BYTES[rng.below(BYTES.len())];
                let n = 1 << rng.below(13);
                b.splice(at..at, std::iter::repeat_n(c, n));
            }
            _ if len > 0 => {
                // Repeat the tail or a line: nesting and duplicate keys.
                let from = rng.below(len);
                let n = 1 + rng.below((len - from).min(128));
                let chunk = b[from..from + n].to_vec();
                for _ in 0..1 + rng.below(8) {
                    b.splice(from..from, chunk.iter().copied());
                }
            }
            _ => b.push(rng.next_u64() as u8),
        }
    }
}

/// The run of ASCII digits at or after `at` (within 32 bytes), if any.
fn digit_run(b: &[u8], at: usize) -> Option<(usize, usize)> {
    let start = (at..b.len().min(at + 32)).find(|&i| b[i].is_ascii_digit())?;
    let end = (start..b.len())
        .find(|&i| !b[i].is_ascii_digit())
        .unwrap_or(b.len());
    Some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same seed gives the same mutations; inputs stay within the length limit.
    #[test]
    fn mutations_are_reproducible_and_bounded() {
        let corpus = vec![b"name = \"x\"\nversion = 12\n".to_vec(), b"{}".to_vec()];
        let dict = vec![b"[[line]]".to_vec()];
        let m = Mutator {
            dictionary: &dict,
            max_len: 100,
        };
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..2000 {
            let x = m.mutate(&mut a, &corpus);
            assert_eq!(x, m.mutate(&mut b, &corpus));
            assert!(x.len() <= 100);
        }
    }
}
