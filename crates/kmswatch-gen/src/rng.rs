//! A small seeded generator (PCG-XSH-RR 64/32 seeded through SplitMix64): deterministic across
//! platforms and releases, which a dependency's generator would not promise.

/// PCG32 with helpers for what the generator draws.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
    inc: u64,
}

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator for `seed` and a named stream (each cloud draws from its own stream, so
    /// adding an event to one cloud does not change the others).
    pub fn new(seed: u64, stream: &str) -> Rng {
        let mut s = seed;
        for b in stream.bytes() {
            s = s.rotate_left(8) ^ u64::from(b);
            splitmix(&mut s);
        }
        let state = splitmix(&mut s);
        let inc = splitmix(&mut s) | 1;
        let mut r = Rng { state: 0, inc };
        r.next_u32();
        r.state = r.state.wrapping_add(state);
        r.next_u32();
        r
    }

    /// Next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        let old = self.state;
        self.state = old
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(self.inc);
        let xorshifted = (((old >> 18) ^ old) >> 27) as u32;
        let rot = (old >> 59) as u32;
        xorshifted.rotate_right(rot)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        (u64::from(self.next_u32()) << 32) | u64::from(self.next_u32())
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Lemire's multiply-shift; the tiny bias is irrelevant for synthetic logs.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..hi` (lo when empty).
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        lo + self.below((hi - lo) as u64) as i64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// One element of a non-empty slice (the first when called on a one-element slice).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len() as u64) as usize)
    }

    /// `x` rounded up or down at random so that the expectation is `x`.
    pub fn round(&mut self, x: f64) -> u64 {
        if x <= 0.0 {
            return 0;
        }
        let f = x.floor();
        f as u64 + u64::from(self.chance(x - f))
    }

    /// `n` lowercase hex digits.
    pub fn hex(&mut self, n: usize) -> String {
        const H: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(n);
        let mut bits = 0u64;
        for i in 0..n {
            if i % 16 == 0 {
                bits = self.next_u64();
            }
            s.push(char::from(H[(bits & 15) as usize]));
            bits >>= 4;
        }
        s
    }

    /// A random version-4 UUID, lowercase.
    pub fn uuid(&mut self) -> String {
        let h = self.hex(32);
        let (a, rest) = h.split_at(8);
        let (b, rest) = rest.split_at(4);
        let (_, rest) = rest.split_at(1);
        let (c, rest) = rest.split_at(3);
        let (_, rest) = rest.split_at(1);
        let (d, e) = rest.split_at(3);
        let v = ['8', '9', 'a', 'b'][(self.below(4)) as usize];
        format!("{a}-{b}-4{c}-{v}{d}-{e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_same_numbers() {
        let mut a = Rng::new(7, "aws");
        let mut b = Rng::new(7, "aws");
        let mut c = Rng::new(7, "gcp");
        let va: Vec<u32> = (0..8).map(|_| a.next_u32()).collect();
        let vb: Vec<u32> = (0..8).map(|_| b.next_u32()).collect();
        let vc: Vec<u32> = (0..8).map(|_| c.next_u32()).collect();
        assert_eq!(va, vb);
        assert_ne!(va, vc);
    }

    #[test]
    fn uuid_shape_and_bounds() {
        let mut r = Rng::new(1, "x");
        let u = r.uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        for _ in 0..1000 {
            assert!(r.below(10) < 10);
            let x = r.range(-5, 5);
            assert!((-5..5).contains(&x));
        }
        assert_eq!(r.below(0), 0);
    }
}
