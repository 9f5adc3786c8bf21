//! Generated text for the benchmarks: pronounceable words from a vocabulary drawn with
//! Zipf's law (a word of rank r with probability ∝ 1/r), as chat text uses words.

use rand::rngs::StdRng;
use rand::Rng;

/// A pronounceable word for each vocabulary rank (distinct for distinct ranks).
pub fn word(rank: usize) -> String {
    const SYLLABLES: [&str; 24] = [
        "ka", "lo", "mi", "ne", "ru", "sa", "te", "vo", "zi", "ba", "do", "fu", "ga", "hi", "jo",
        "ku", "la", "me", "no", "pi", "re", "si", "tu", "ve",
    ];
    let mut n = rank + SYLLABLES.len(); // at least two syllables
    let mut out = String::new();
    while n > 0 {
        out.push_str(SYLLABLES[n % SYLLABLES.len()]);
        n /= SYLLABLES.len();
    }
    out
}

/// Word ranks drawn with probability ∝ 1/rank.
pub struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize) -> Self {
        let mut total = 0.0;
        let cumulative = (1..=n)
            .map(|rank| {
                total += 1.0 / rank as f64;
                total
            })
            .collect::<Vec<_>>();
        Self {
            cumulative: cumulative.iter().map(|c| c / total).collect(),
        }
    }

    pub fn draw(&self, rng: &mut StdRng) -> usize {
        let x: f64 = rng.random();
        self.cumulative.partition_point(|c| *c < x)
    }

    /// Words drawn until the text has at least `bytes` bytes.
    pub fn text(&self, rng: &mut StdRng, bytes: usize) -> String {
        let mut text = String::with_capacity(bytes + 16);
        while text.len() < bytes {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(&word(self.draw(rng)));
        }
        text
    }
}
