//! The run's randomness: splitmix64, and the distributions the model draws from. One seed
//! gives one run.

/// A seeded generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    /// A generator derived from this one and `stream` (a site's own, say), so that what
    /// one site draws does not shift what the others draw.
    pub fn fork(&self, stream: u64) -> Rng {
        let mut r = Rng(self.0 ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        r.next_u64();
        r
    }

    /// 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// A standard normal draw (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(f64::MIN_POSITIVE);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Log-normal with this median, and log-scale spreads below and above it.
    pub fn log_normal(&mut self, median: f64, sigma_low: f64, sigma_high: f64) -> f64 {
        let z = self.normal();
        let sigma = if z < 0.0 { sigma_low } else { sigma_high };
        median * (sigma * z).exp()
    }

    /// Exponential with this mean.
    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn draws_follow_their_distributions() {
        let mut r = Rng::new(7);
        let n = 100_000;
        let mut draws: Vec<f64> = (0..n).map(|_| r.log_normal(20.0, 1.2, 1.2)).collect();
        draws.sort_by(f64::total_cmp);
        let median = draws[n / 2];
        assert!((18.0..22.0).contains(&median), "{median}");
        let mean = (0..n).map(|_| r.exponential(5.0)).sum::<f64>() / n as f64;
        assert!((4.8..5.2).contains(&mean), "{mean}");
        assert_eq!(
            Rng::new(3).fork(9).next_u64(),
            Rng::new(3).fork(9).next_u64()
        );
        assert_ne!(
            Rng::new(3).fork(9).next_u64(),
            Rng::new(3).fork(10).next_u64()
        );
    }
}
