//! The model test's deterministic PRNG (splitmix64, its own and not the engine's) and the
//! seeds and operation counts a run uses.

/// Seeds every run tries; `seeds` adds one drawn from the clock.
const DEFAULT_SEEDS: [u64; 19] =
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 42, 1234, 5678, 9999, 31337, 65537, 271828, 314159, 8675309];
/// Operations per seed unless `RIFFLE_TEST_OPS` says otherwise.
const DEFAULT_OPS: usize = 150;

pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "empty range");
        self.next() % n
    }

    /// Uniform in `lo..=hi`.
    pub(super) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo <= hi, "empty range {lo}..={hi}");
        lo + self.below(hi - lo + 1)
    }

    pub(super) fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    pub(super) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub(super) fn u128(&mut self) -> u128 {
        (u128::from(self.next()) << 64) | u128::from(self.next())
    }

    /// Uniform in `lo..=hi`.
    pub(super) fn u128_in(&mut self, lo: u128, hi: u128) -> u128 {
        assert!(lo <= hi, "empty range");
        match (hi - lo).checked_add(1) {
            None => self.u128(),
            Some(width) => lo + self.u128() % width,
        }
    }

    pub(super) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }
}

pub(super) fn seeds() -> Vec<u64> {
    if let Ok(text) = std::env::var("RIFFLE_TEST_SEED") {
        return vec![text.trim().parse().expect("RIFFLE_TEST_SEED must be a u64")];
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut seeds = DEFAULT_SEEDS.to_vec();
    seeds.push(Rng(nanos).next());
    seeds
}

pub(super) fn ops_per_seed() -> usize {
    std::env::var("RIFFLE_TEST_OPS")
        .ok()
        .map_or(DEFAULT_OPS, |t| t.trim().parse().expect("RIFFLE_TEST_OPS must be a number"))
}
