//! Each site's link: a download rate drawn from its class, and an up/down process with
//! long outages and short blips. The figures and their sources are in the README
//! ("Links").

use crate::rng::Rng;

/// One kind of link, as the model draws it.
#[derive(Debug, Clone, Copy)]
pub struct Class {
    /// Its name in reports.
    pub name: &'static str,
    /// Share of the fleet.
    pub share: f64,
    /// Median download rate, Mbit/s.
    pub median_mbps: f64,
    /// Log-scale spread below and above the median.
    pub sigma: (f64, f64),
    /// Highest rate drawn, Mbit/s.
    pub cap_mbps: f64,
    /// Mean time between long outages, seconds.
    pub mtbf_s: f64,
    /// Median length of a long outage, seconds (log-normal, spread 1.0).
    pub mttr_s: f64,
    /// Short drops per day.
    pub blips_per_day: f64,
    /// Mean length of a short drop, seconds.
    pub blip_s: f64,
}

const DAY: f64 = 86_400.0;

/// The fleet's mix of links (README, "Links").
pub const CLASSES: [Class; 4] = [
    Class {
        name: "fixed",
        share: 0.60,
        median_mbps: 100.0,
        sigma: (1.26, 1.26),
        cap_mbps: 1000.0,
        mtbf_s: 90.0 * DAY,
        mttr_s: 2.0 * 3600.0,
        blips_per_day: 0.5,
        blip_s: 60.0,
    },
    Class {
        name: "cellular",
        share: 0.30,
        median_mbps: 20.0,
        sigma: (1.2, 1.2),
        cap_mbps: 300.0,
        mtbf_s: 21.0 * DAY,
        mttr_s: 1800.0,
        blips_per_day: 3.0,
        blip_s: 60.0,
    },
    Class {
        name: "leo-satellite",
        share: 0.07,
        median_mbps: 110.0,
        sigma: (1.27, 0.60),
        cap_mbps: 400.0,
        mtbf_s: 90.0 * DAY,
        mttr_s: 2.0 * 3600.0,
        blips_per_day: 24.0,
        blip_s: 10.0,
    },
    Class {
        name: "geo-satellite",
        share: 0.03,
        median_mbps: 4.0,
        sigma: (1.05, 1.05),
        cap_mbps: 50.0,
        mtbf_s: 7.0 * DAY,
        mttr_s: 1200.0,
        blips_per_day: 2.0,
        blip_s: 120.0,
    },
];

/// Share of cellular sites with a poor signal: ten more drops a day, 90 s each on average
/// (a fifth of stationary cellular connections are down over 10 minutes a day).
const POOR_CELLULAR: f64 = 0.2;

/// How bad the links are in a scenario.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weather {
    /// Share of sites whose link flaps: down every 30 minutes on average, for 5.
    pub flapping: f64,
    /// Short drops per day multiplied by this.
    pub blips: f64,
    /// Share of sites in a region that goes down together, and when (seconds).
    pub regional: (f64, f64, f64),
    /// Share of sites that fell back to a link ten times slower.
    pub slowed: f64,
}

impl Weather {
    /// Links as they usually are.
    pub const NORMAL: Weather = Weather {
        flapping: 0.0,
        blips: 1.0,
        regional: (0.0, 0.0, 0.0),
        slowed: 0.0,
    };
    /// Heavy link loss: a quarter of the sites flapping, three times the drops, 7% of the
    /// sites down together for 4 hours from the 30th minute, 10% on a ten times slower link.
    pub const HEAVY_LOSS: Weather = Weather {
        flapping: 0.25,
        blips: 3.0,
        regional: (0.07, 1800.0, 1800.0 + 4.0 * 3600.0),
        slowed: 0.10,
    };
}

/// One site's link.
#[derive(Debug, Clone)]
pub struct Link {
    /// Index into [`CLASSES`].
    pub class: usize,
    /// Download rate, bytes per second.
    pub rate: f64,
    up: bool,
    /// When the current up or down period ends, seconds.
    until: f64,
    /// Long outages per second.
    long_rate: f64,
    /// Short drops per second.
    blip_rate: f64,
    blip_s: f64,
    mttr_s: f64,
    /// Flapping: (rate of its drops per second, mean length).
    flap: Option<(f64, f64)>,
    /// Down together with its region in this window.
    regional: Option<(f64, f64)>,
    rng: Rng,
}

impl Link {
    /// A site's link, drawn from `rng`, under `weather`.
    pub fn draw(mut rng: Rng, weather: &Weather) -> Link {
        let pick = rng.unit();
        let mut acc = 0.0;
        let class = CLASSES
            .iter()
            .position(|c| {
                acc += c.share;
                pick < acc
            })
            .unwrap_or(0);
        let c = CLASSES[class];
        let mut mbps = rng
            .log_normal(c.median_mbps, c.sigma.0, c.sigma.1)
            .clamp(0.25, c.cap_mbps);
        if rng.chance(weather.slowed) {
            mbps /= 10.0;
        }
        let mut blips = c.blips_per_day * weather.blips;
        let mut blip_s = c.blip_s;
        if class == 1 && rng.chance(POOR_CELLULAR) {
            blips += 10.0;
            blip_s = 90.0;
        }
        let flap = rng
            .chance(weather.flapping)
            .then_some((1.0 / 1800.0, 300.0));
        let regional = rng
            .chance(weather.regional.0)
            .then_some((weather.regional.1, weather.regional.2));
        let mut link = Link {
            class,
            rate: mbps * 125_000.0,
            up: true,
            until: 0.0,
            long_rate: 1.0 / c.mtbf_s,
            blip_rate: blips / DAY,
            blip_s,
            mttr_s: c.mttr_s,
            flap,
            regional,
            rng,
        };
        // Start in the process's steady state: up or down as it would be at any moment.
        link.until = link.up_time();
        let down_share = link.down_share();
        if link.rng.chance(down_share) {
            link.up = false;
            link.until = link.down_time();
        }
        link
    }

    fn drops_per_second(&self) -> f64 {
        self.long_rate + self.blip_rate + self.flap.map_or(0.0, |f| f.0)
    }

    fn up_time(&mut self) -> f64 {
        self.rng.exponential(1.0 / self.drops_per_second())
    }

    fn down_time(&mut self) -> f64 {
        let total = self.drops_per_second();
        let pick = self.rng.unit() * total;
        if pick < self.long_rate {
            self.rng.log_normal(self.mttr_s, 1.0, 1.0)
        } else if pick < self.long_rate + self.blip_rate {
            self.rng.exponential(self.blip_s)
        } else {
            self.rng.exponential(self.flap.map_or(1.0, |f| f.1))
        }
    }

    /// The long-run share of time the link is down (outside its region's event).
    pub fn down_share(&self) -> f64 {
        let down = self.long_rate * self.mttr_s * (0.5f64).exp()
            + self.blip_rate * self.blip_s
            + self.flap.map_or(0.0, |f| f.0 * f.1);
        down / (1.0 + down)
    }

    /// Moves the link's process to `now` (seconds); returns whether it was down at any
    /// moment since `since`.
    pub fn advance(&mut self, since: f64, now: f64) -> bool {
        let mut down = !self.up;
        while self.until <= now {
            self.up = !self.up;
            let length = if self.up {
                self.up_time()
            } else {
                down = true;
                self.down_time()
            };
            self.until += length;
        }
        if let Some((from, to)) = self.regional {
            if from <= now && to > since {
                down = true;
            }
        }
        down
    }

    /// Whether the link is up at `now` (the process already moved there).
    pub fn up_at(&self, now: f64) -> bool {
        self.up
            && self
                .regional
                .is_none_or(|(from, to)| now < from || now >= to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_follows_its_classes() {
        let root = Rng::new(1);
        let links: Vec<Link> = (0..20_000)
            .map(|i| Link::draw(root.fork(i), &Weather::NORMAL))
            .collect();
        for (i, c) in CLASSES.iter().enumerate() {
            let mut rates: Vec<f64> = links
                .iter()
                .filter(|l| l.class == i)
                .map(|l| l.rate / 125_000.0)
                .collect();
            let share = rates.len() as f64 / links.len() as f64;
            assert!((share - c.share).abs() < 0.01, "{}: {share}", c.name);
            rates.sort_by(f64::total_cmp);
            let median = rates[rates.len() / 2];
            assert!(
                (median / c.median_mbps - 1.0).abs() < 0.1,
                "{}: median {median}",
                c.name
            );
        }
    }

    #[test]
    fn a_link_is_down_about_as_often_as_its_model_says() {
        let root = Rng::new(2);
        for weather in [Weather::NORMAL, Weather::HEAVY_LOSS] {
            let mut expected = 0.0;
            let mut seen = 0.0;
            // 2,000 links for 4 days, looked at every 30 s.
            for i in 0..2000 {
                let mut link = Link::draw(root.fork(i), &weather);
                if link.regional.is_some() {
                    continue;
                }
                expected += link.down_share();
                let mut down = 0;
                let looks = 4 * 86_400 / 30;
                for s in 0..looks {
                    let t = f64::from(s * 30);
                    link.advance(t - 30.0, t);
                    if !link.up_at(t) {
                        down += 1;
                    }
                }
                seen += f64::from(down) / f64::from(looks);
            }
            assert!(
                (seen / expected - 1.0).abs() < 0.3,
                "{weather:?}: down {seen} against {expected}"
            );
        }
    }
}
