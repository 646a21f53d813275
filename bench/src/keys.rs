//! Partition key distributions: uniform over N keys, Zipf over N keys, or one hot key.

use std::str::FromStr;

/// How producers pick partition keys.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum KeyDistribution {
    /// Each of `keys` keys equally likely.
    Uniform {
        /// Number of distinct keys.
        keys: u32,
    },
    /// Key `k` (1-based) with probability proportional to `1 / k^s`.
    Zipf {
        /// Number of distinct keys.
        keys: u32,
        /// The exponent: 0 is uniform, 1 the classic Zipf, larger is more skewed.
        s: f64,
    },
    /// Every record has the same key (one shard takes everything).
    Hot,
}

impl FromStr for KeyDistribution {
    type Err = String;

    /// `uniform[:N]` (default 10,000 keys), `zipf[:N[:S]]` (default 10,000 keys, s = 1.0),
    /// `hot`.
    fn from_str(text: &str) -> Result<Self, String> {
        let mut parts = text.split(':');
        let kind = parts.next().unwrap_or("");
        let num = |v: Option<&str>, default: f64| -> Result<f64, String> {
            v.map_or(Ok(default), |v| v.parse::<f64>().map_err(|e| format!("{text}: {e}")))
        };
        let keys = |v| -> Result<u32, String> {
            let n = num(v, 10_000.0)?;
            if !(1.0..=1e9).contains(&n) || n.fract() != 0.0 {
                return Err(format!("{text}: the key count must be a whole number in 1..=1e9"));
            }
            Ok(n as u32)
        };
        match kind {
            "uniform" => Ok(KeyDistribution::Uniform { keys: keys(parts.next())? }),
            "zipf" => {
                let k = keys(parts.next())?;
                let s = num(parts.next(), 1.0)?;
                if !(0.0..=10.0).contains(&s) {
                    return Err(format!("{text}: the Zipf exponent must be in 0..=10"));
                }
                Ok(KeyDistribution::Zipf { keys: k, s })
            }
            "hot" => Ok(KeyDistribution::Hot),
            _ => {
                Err(format!("unknown key distribution {text:?}: uniform[:N], zipf[:N[:S]] or hot"))
            }
        }
    }
}

/// A small, fast, seedable generator (SplitMix64): benchmark randomness, not cryptography.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Draws key indexes from a distribution. Zipf uses a precomputed CDF (binary search), so
/// a draw costs O(log N) whatever the exponent.
#[derive(Debug, Clone)]
pub struct KeySampler {
    dist: KeyDistribution,
    cdf: Vec<f64>,
    rng: Rng,
}

impl KeySampler {
    /// A sampler for `dist`, seeded.
    pub fn new(dist: KeyDistribution, seed: u64) -> Self {
        let cdf = match dist {
            KeyDistribution::Zipf { keys, s } => {
                let weights: Vec<f64> = (1..=keys).map(|k| 1.0 / f64::from(k).powf(s)).collect();
                let total: f64 = weights.iter().sum();
                let mut acc = 0.0;
                weights
                    .iter()
                    .map(|w| {
                        acc += w / total;
                        acc
                    })
                    .collect()
            }
            _ => Vec::new(),
        };
        KeySampler { dist, cdf, rng: Rng::new(seed) }
    }

    /// The next key index.
    pub fn next_index(&mut self) -> u32 {
        match self.dist {
            KeyDistribution::Uniform { keys } => (self.rng.next_u64() % u64::from(keys)) as u32,
            KeyDistribution::Zipf { .. } => {
                let u = self.rng.next_f64();
                let at = self.cdf.partition_point(|&c| c < u);
                at.min(self.cdf.len() - 1) as u32
            }
            KeyDistribution::Hot => 0,
        }
    }
}

/// The partition key text of key index `i`.
pub fn key_name(i: u32) -> String {
    format!("key-{i:08}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distributions_parse() {
        assert_eq!("uniform".parse(), Ok(KeyDistribution::Uniform { keys: 10_000 }));
        assert_eq!("uniform:5".parse(), Ok(KeyDistribution::Uniform { keys: 5 }));
        assert_eq!("zipf:100:1.2".parse(), Ok(KeyDistribution::Zipf { keys: 100, s: 1.2 }));
        assert_eq!("hot".parse(), Ok(KeyDistribution::Hot));
        assert!("zipf:0".parse::<KeyDistribution>().is_err());
        assert!("other".parse::<KeyDistribution>().is_err());
    }

    #[test]
    fn zipf_favours_low_ranks_and_uniform_does_not() {
        let mut counts = [0u32; 10];
        let mut z = KeySampler::new(KeyDistribution::Zipf { keys: 10, s: 1.0 }, 1);
        for _ in 0..100_000 {
            counts[z.next_index() as usize] += 1;
        }
        // P(k=1) = 1/H(10) = 0.341; P(k=10) = 0.0341.
        assert!((32_000..36_000).contains(&counts[0]), "{counts:?}");
        assert!((2_900..3_900).contains(&counts[9]), "{counts:?}");
        let mut u = KeySampler::new(KeyDistribution::Uniform { keys: 10 }, 1);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            counts[u.next_index() as usize] += 1;
        }
        assert!(counts.iter().all(|c| (9_000..11_000).contains(c)), "{counts:?}");
    }
}
