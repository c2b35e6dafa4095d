//! Tiny non-cryptographic PRNG (SplitMix64) for random partition keys, backoff jitter and
//! the environment id, and [`os_entropy`] for what must not be guessed.
//!
//! Not for secrets. Seeds come from the OS's entropy (`getrandom(2)`, which a restored
//! microVM's kernel reseeds), mixed with the wall clock, the process id, a stack address
//! (ASLR) and a process-wide counter, so two generators created in the same nanosecond, or
//! in two environments restored from the same SnapStart snapshot, diverge even if one of the
//! sources repeats. A generator's state is a value: one drawn before a snapshot is shared by
//! every restored copy, so whoever holds one replaces it at the restore (see `snapstart`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// SplitMix64 state (Steele, Lea, Flood 2014): every seed gives a full-period sequence.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

impl Rng {
    /// A generator seeded from the OS's entropy, time, pid, a stack address and a
    /// per-process counter.
    pub fn new() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let local = 0u8;
        let addr = std::ptr::addr_of!(local) as usize as u64;
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        // Without the syscall (an ancient kernel) the other sources still differ per draw.
        let mut os = [0u8; 8];
        let os = getrandom::getrandom(&mut os).map_or(0, |()| u64::from_le_bytes(os));
        let mut seed = nanos;
        for part in [os, u64::from(std::process::id()), addr, count] {
            seed = mix(seed ^ part.wrapping_mul(GOLDEN_GAMMA));
        }
        Self::seeded(seed)
    }

    /// A generator with a fixed seed: same seed, same sequence (for tests).
    pub fn seeded(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix(self.state)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift with rejection, so no modulo bias).
    /// Returns 0 when `n == 0`.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            // Rejection happens with probability < n / 2^64: the loop ends almost surely
            // on the first draw.
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }
}

impl Default for Rng {
    fn default() -> Self {
        Self::new()
    }
}

/// Fills `buf` from the operating system's entropy source (getrandom(2), else
/// `/dev/urandom`): for secrets, which [`Rng`] must never make. Fresh on every call.
pub fn os_entropy(buf: &mut [u8]) -> Result<(), getrandom::Error> {
    getrandom::getrandom(buf)
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_reference_sequence() {
        // First outputs of the reference splitmix64.c with seed 1234567.
        let mut r = Rng::seeded(1_234_567);
        assert_eq!(r.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(r.next_u64(), 3_203_168_211_198_807_973);
        assert_eq!(r.next_u64(), 9_817_491_932_198_370_423);
    }

    #[test]
    fn seeded_is_deterministic_and_new_differs() {
        let (mut a, mut b) = (Rng::seeded(7), Rng::seeded(7));
        for _ in 0..4 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let (mut x, mut y) = (Rng::new(), Rng::new());
        assert_ne!(
            x.next_u64(),
            y.next_u64(),
            "two generators created back to back must differ"
        );
    }

    #[test]
    fn os_entropy_is_fresh_on_every_call() {
        let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
        os_entropy(&mut a).expect("the OS has entropy");
        os_entropy(&mut b).expect("the OS has entropy");
        assert_ne!(a, b);
        assert_ne!(a, [0; 16]);
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut r = Rng::seeded(42);
        assert_eq!(r.below(0), 0);
        assert_eq!(r.below(1), 0);
        let mut seen = [0u32; 6];
        for _ in 0..6000 {
            let v = r.below(6);
            assert!(v < 6);
            seen[v as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800), "roughly uniform: {seen:?}");
        for _ in 0..100 {
            assert!(r.below(u64::MAX) < u64::MAX);
        }
    }
}
