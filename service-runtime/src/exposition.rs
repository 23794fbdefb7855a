//! Writing metrics in the Prometheus text format, and the latency
//! histogram every component keeps. Label values are bounded by whoever
//! calls (route templates and method names, never raw paths or ids).

use std::{
    fmt::{Display, Write},
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

/// A scrape's text, family by family.
#[derive(Default)]
pub struct Exposition(String);

#[derive(Clone, Copy)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Exposition {
    /// Starts the family `name`.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = write!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
    }

    /// One sample of the current family.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (key, label)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{key}=\"{}\"", escape(label));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    /// A whole family with one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Prometheus's usual latency buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A latency histogram anyone may observe into without a lock.
#[derive(Default)]
pub struct LatencyHistogram {
    /// Observations at or under each bound (cumulative, as exposed).
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl LatencyHistogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        for (bucket, bound) in self.buckets.iter().zip(LATENCY_BUCKETS) {
            if seconds <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Its `_bucket`, `_sum` and `_count` samples under `name`.
    pub fn write(&self, out: &mut Exposition, name: &str, labels: &[(&str, &str)]) {
        let bucket = format!("{name}_bucket");
        let bounds: Vec<String> = LATENCY_BUCKETS.iter().map(f64::to_string).collect();
        let counts = self.buckets.iter().map(|n| n.load(Ordering::Relaxed));
        for (le, n) in bounds
            .iter()
            .map(String::as_str)
            .chain(["+Inf"])
            .zip(counts.chain([self.count()]))
        {
            let mut with_le: Vec<(&str, &str)> = labels.to_vec();
            with_le.push(("le", le));
            out.sample(&bucket, &with_le, n);
        }
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        out.sample(&format!("{name}_sum"), labels, sum);
        out.sample(&format!("{name}_count"), labels, self.count());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_histograms_read_as_the_text_format() {
        let histogram = LatencyHistogram::default();
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_millis(300));
        let mut out = Exposition::default();
        out.family("x_seconds", Kind::Histogram, "Time.");
        histogram.write(&mut out, "x_seconds", &[("route", "/a/\"b\"")]);
        let text = out.into_string();
        assert!(text.starts_with("# HELP x_seconds Time.\n# TYPE x_seconds histogram\n"));
        assert!(text.contains("x_seconds_bucket{route=\"/a/\\\"b\\\"\",le=\"0.005\"} 1\n"));
        assert!(text.contains("x_seconds_bucket{route=\"/a/\\\"b\\\"\",le=\"0.25\"} 1\n"));
        assert!(text.contains("x_seconds_bucket{route=\"/a/\\\"b\\\"\",le=\"0.5\"} 2\n"));
        assert!(text.contains("x_seconds_bucket{route=\"/a/\\\"b\\\"\",le=\"+Inf\"} 2\n"));
        assert!(text.contains("x_seconds_count{route=\"/a/\\\"b\\\"\"} 2\n"));
    }
}
