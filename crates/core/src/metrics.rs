//! Prometheus text exposition (format 0.0.4), written by hand: the node's parts keep
//! their own numbers ([`Counter`], [`Counters`] by label values, [`Histogram`]) and write
//! them into one [`Exposition`] when `/metrics` is scraped; a [`Source`] is anything that
//! can. Label values are escaped; every family is announced once with its HELP and TYPE.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Something that writes metric families when scraped.
pub trait Source: Send + Sync {
    /// Writes its families into `out`.
    fn expose(&self, out: &mut Exposition);
}

/// The text of one scrape.
#[derive(Default)]
pub struct Exposition {
    text: String,
}

/// A family's type.
#[derive(Clone, Copy)]
pub enum Kind {
    /// Only goes up (resets when the node restarts).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations in buckets.
    Histogram,
}

impl Exposition {
    /// Announces a family: its HELP and TYPE lines.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) -> &mut Self {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
        self
    }

    /// One sample of the family announced last.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.text, "{k}=\"{v}\"");
            }
            self.text.push('}');
        }
        if value.is_infinite() {
            let _ = writeln!(self.text, " {}", if value > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            let _ = writeln!(self.text, " {value}");
        }
        self
    }

    /// A family of one unlabelled sample.
    pub fn single(&mut self, name: &str, help: &str, kind: Kind, value: f64) -> &mut Self {
        self.family(name, help, kind).sample(name, &[], value)
    }

    /// The text.
    pub fn into_text(self) -> String {
        self.text
    }
}

/// A counter.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// The count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Series kept at most by one labelled family; further label values count under
/// `"other"`, so a stream of new names cannot exhaust memory.
const MAX_SERIES: usize = 200;

/// The key of `values` in `map`: themselves, or `"other"` for each once the family has
/// [`MAX_SERIES`] series.
fn key_in<V>(map: &BTreeMap<Vec<String>, V>, values: &[&str]) -> Vec<String> {
    let key: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
    if map.contains_key(&key) || map.len() < MAX_SERIES {
        key
    } else {
        vec!["other".to_owned(); values.len()]
    }
}

/// Counters by label values (for example by registry and outcome).
#[derive(Default, Debug)]
pub struct Counters(Mutex<BTreeMap<Vec<String>, u64>>);

impl Counters {
    /// Adds `n` to the series of `values`.
    pub fn add(&self, values: &[&str], n: u64) {
        let mut map = self.0.lock().expect("counters lock");
        let key = key_in(&map, values);
        *map.entry(key).or_default() += n;
    }

    /// Adds one to the series of `values`.
    pub fn inc(&self, values: &[&str]) {
        self.add(values, 1);
    }

    /// The count of `values`.
    pub fn get(&self, values: &[&str]) -> u64 {
        let key: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        self.0
            .lock()
            .expect("counters lock")
            .get(&key)
            .copied()
            .unwrap_or(0)
    }

    /// Writes the family `name` with label names `labels`.
    pub fn expose(&self, out: &mut Exposition, name: &str, help: &str, labels: &[&str]) {
        out.family(name, help, Kind::Counter);
        for (values, n) in self.0.lock().expect("counters lock").iter() {
            let pairs: Vec<(&str, &str)> = labels
                .iter()
                .copied()
                .zip(values.iter().map(String::as_str))
                .collect();
            out.sample(name, &pairs, *n as f64);
        }
    }
}

/// Upper bounds (seconds) of the latency buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Histograms of seconds by label values.
#[derive(Default, Debug)]
pub struct Histogram(Mutex<BTreeMap<Vec<String>, Buckets>>);

#[derive(Default, Debug, Clone)]
struct Buckets {
    counts: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    /// Records `seconds` in the series of `values`.
    pub fn observe(&self, values: &[&str], seconds: f64) {
        let mut map = self.0.lock().expect("histogram lock");
        let key = key_in(&map, values);
        let b = map.entry(key).or_default();
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            if seconds <= *le {
                b.counts[i] += 1;
            }
        }
        b.count += 1;
        b.sum += seconds;
    }

    /// Writes the family `name` with label names `labels`.
    pub fn expose(&self, out: &mut Exposition, name: &str, help: &str, labels: &[&str]) {
        out.family(name, help, Kind::Histogram);
        let bucket = format!("{name}_bucket");
        for (values, b) in self.0.lock().expect("histogram lock").iter() {
            let mut pairs: Vec<(&str, &str)> = labels
                .iter()
                .copied()
                .zip(values.iter().map(String::as_str))
                .collect();
            let les: Vec<String> = LATENCY_BUCKETS.iter().map(|le| le.to_string()).collect();
            for (i, le) in les.iter().enumerate() {
                pairs.push(("le", le));
                out.sample(&bucket, &pairs, b.counts[i] as f64);
                pairs.pop();
            }
            pairs.push(("le", "+Inf"));
            out.sample(&bucket, &pairs, b.count as f64);
            pairs.pop();
            out.sample(&format!("{name}_sum"), &pairs, b.sum);
            out.sample(&format!("{name}_count"), &pairs, b.count as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_escapes() {
        let mut out = Exposition::default();
        out.single("a_total", "As.", Kind::Counter, 3.0);
        let c = Counters::default();
        c.inc(&["reg.io", "ok"]);
        c.add(&["we\"ird\\", "failed"], 2);
        c.expose(&mut out, "b_total", "Bs.", &["registry", "outcome"]);
        let h = Histogram::default();
        h.observe(&["GET"], 0.02);
        h.observe(&["GET"], 100.0);
        h.expose(&mut out, "c_seconds", "Cs.", &["method"]);
        let text = out.into_text();
        assert!(
            text.contains("# TYPE a_total counter\na_total 3\n"),
            "{text}"
        );
        assert!(text.contains("b_total{registry=\"reg.io\",outcome=\"ok\"} 1\n"));
        assert!(text.contains("b_total{registry=\"we\\\"ird\\\\\",outcome=\"failed\"} 2\n"));
        assert!(text.contains("c_seconds_bucket{method=\"GET\",le=\"0.01\"} 0\n"));
        assert!(text.contains("c_seconds_bucket{method=\"GET\",le=\"0.025\"} 1\n"));
        assert!(text.contains("c_seconds_bucket{method=\"GET\",le=\"+Inf\"} 2\n"));
        assert!(text.contains("c_seconds_count{method=\"GET\"} 2\n"));
    }

    #[test]
    fn label_values_beyond_the_limit_count_as_other() {
        let c = Counters::default();
        for i in 0..MAX_SERIES + 10 {
            c.inc(&[&i.to_string()]);
        }
        assert_eq!(c.get(&["other"]), 10);
        assert_eq!(c.get(&["0"]), 1);
    }
}
