//! Folding samples into the interval's report (per minute, workspace,
//! route and status, with a latency histogram) and into the cumulative
//! Prometheus series; the report leaves every interval.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use proto::analytics::v1::{LatencyBucket, ReadinessSample, RecordApiUsageRequest, SlowRequest, UsageCell};
use service_runtime::{
    exposition::{Exposition, Kind, LatencyHistogram},
    time::timestamp,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    UsageSettings, histogram,
    recorder::{ReadinessCheck, Sample},
};

/// How often waiting samples are folded in. The channel holds 65 536, a
/// little over a second at 50 000 requests a second.
const DRAIN_EVERY: Duration = Duration::from_millis(20);
/// Slow requests one report lists, at most (the slowest).
const SLOW_PER_REPORT: usize = 20;

#[derive(Hash, PartialEq, Eq)]
struct CellKey {
    workspace: String,
    minute: DateTime<Utc>,
    method: http::Method,
    route: Arc<str>,
    status: u16,
}

struct Cell {
    requests: i64,
    slow: i64,
    buckets: [i64; histogram::BUCKETS],
}

#[derive(Default)]
struct Interval {
    cells: HashMap<CellKey, Cell>,
    slowest: Vec<SlowRequest>,
    readiness: HashMap<(DateTime<Utc>, String), (i64, i64)>,
}

pub fn spawn(
    mut samples: mpsc::Receiver<Sample>,
    mut checks: mpsc::Receiver<ReadinessCheck>,
    reports: mpsc::Sender<RecordApiUsageRequest>,
    settings: UsageSettings,
    prometheus: std::sync::Arc<Prometheus>,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let mut interval = Interval::default();
        // Route names are few; each is allocated once.
        let mut routes: HashSet<Arc<str>> = HashSet::new();
        let mut tick = tokio::time::interval(settings.report_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Samples are collected on a timer, never awaited: a receiver that
        // waits would be woken by every request, and waking a task costs the
        // request path more than the rest of recording together.
        let mut drain = tokio::time::interval(DRAIN_EVERY);
        drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut take = |interval: &mut Interval, samples: &mut mpsc::Receiver<Sample>| {
            let minute = this_minute();
            let mut series = prometheus.lock();
            while let Ok(sample) = samples.try_recv() {
                let route = intern(&mut routes, sample.route.as_str());
                Prometheus::observe(&mut series, &sample, &route);
                interval.add(sample, route, minute, settings.slow_threshold);
            }
        };
        loop {
            tokio::select! {
                _ = drain.tick() => take(&mut interval, &mut samples),
                Some(check) = checks.recv() => interval.add_check(check),
                _ = tick.tick() => {
                    take(&mut interval, &mut samples);
                    let report = std::mem::take(&mut interval).into_report(settings.slow_threshold);
                    if let Some(report) = report {
                        let _ = reports.try_send(report);
                    }
                }
                _ = shutdown.cancelled() => {
                    // What the last interval saw still goes out.
                    take(&mut interval, &mut samples);
                    if let Some(report) = interval.into_report(settings.slow_threshold) {
                        let _ = reports.try_send(report);
                    }
                    return;
                }
            }
        }
    });
}

fn intern(routes: &mut HashSet<Arc<str>>, name: &str) -> Arc<str> {
    if let Some(known) = routes.get(name) {
        return known.clone();
    }
    let name: Arc<str> = Arc::from(name);
    routes.insert(name.clone());
    name
}

fn this_minute() -> DateTime<Utc> {
    let now = Utc::now();
    now.duration_trunc(TimeDelta::minutes(1)).unwrap_or(now)
}

impl Interval {
    fn add(&mut self, sample: Sample, route: Arc<str>, minute: DateTime<Utc>, slow_threshold: Duration) {
        let slow = sample.elapsed > slow_threshold;
        if slow {
            self.keep_slow(&sample);
        }
        let key = CellKey {
            workspace: sample.workspace.unwrap_or_default(),
            minute,
            method: sample.method,
            route,
            status: sample.status,
        };
        let cell = self.cells.entry(key).or_insert_with(|| Cell {
            requests: 0,
            slow: 0,
            buckets: [0; histogram::BUCKETS],
        });
        cell.requests += 1;
        cell.slow += i64::from(slow);
        cell.buckets[histogram::index_of(sample.elapsed)] += 1;
    }

    fn keep_slow(&mut self, sample: &Sample) {
        let duration_ms = sample.elapsed.as_secs_f64() * 1000.0;
        if self.slowest.len() >= SLOW_PER_REPORT {
            let (fastest, at) = self
                .slowest
                .iter()
                .enumerate()
                .map(|(i, s)| (s.duration_ms, i))
                .min_by(|a, b| a.0.total_cmp(&b.0))
                .unwrap_or((0.0, 0));
            if fastest >= duration_ms {
                return;
            }
            self.slowest.swap_remove(at);
        }
        self.slowest.push(SlowRequest {
            at: Some(timestamp(Utc::now())),
            method: sample.method.to_string(),
            route: sample.route.as_str().to_owned(),
            status: i32::from(sample.status),
            duration_ms,
            request_id: sample
                .request_id
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
            workspace_id: sample.workspace.clone().unwrap_or_default(),
        });
    }

    fn add_check(&mut self, check: ReadinessCheck) {
        let minute = this_minute();
        for (component, passed) in check.components {
            let counts = self.readiness.entry((minute, component)).or_default();
            counts.0 += 1;
            counts.1 += i64::from(passed);
        }
    }

    fn into_report(self, slow_threshold: Duration) -> Option<RecordApiUsageRequest> {
        if self.cells.is_empty() && self.readiness.is_empty() {
            return None;
        }
        let cells = self
            .cells
            .into_iter()
            .map(|(key, cell)| UsageCell {
                workspace_id: key.workspace,
                minute: Some(timestamp(key.minute)),
                method: key.method.to_string(),
                route: key.route.to_string(),
                status: i32::from(key.status),
                requests: cell.requests,
                slow: cell.slow,
                latency: cell
                    .buckets
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| **n > 0)
                    .map(|(i, n)| LatencyBucket {
                        le_ms: histogram::upper_bound_ms(i),
                        count: *n,
                    })
                    .collect(),
            })
            .collect();
        let readiness = self
            .readiness
            .into_iter()
            .map(|((minute, component), (checks, passed))| ReadinessSample {
                minute: Some(timestamp(minute)),
                component,
                checks,
                passed,
            })
            .collect();
        Some(RecordApiUsageRequest {
            report_id: format!("rpt_{}", ids::random_suffix(24)),
            cells,
            slow: self.slowest,
            readiness,
            slow_threshold_ms: slow_threshold.as_secs_f64() * 1000.0,
        })
    }
}

/// Requests of one method and route since the gateway started.
#[derive(Default)]
struct Series {
    /// Requests per status code.
    codes: BTreeMap<u16, u64>,
    latency: LatencyHistogram,
}

/// The gateway's request series since it started, by method and route
/// template (bounded labels), and how its reports to analytics fare.
#[derive(Default)]
pub struct Prometheus {
    series: Mutex<HashMap<(http::Method, Arc<str>), Series>>,
    pub reports_sent: AtomicU64,
    pub reports_failed: AtomicU64,
    pub reports_waiting: AtomicU64,
}

type SeriesMap = HashMap<(http::Method, Arc<str>), Series>;

impl Prometheus {
    /// The series, locked for a batch of samples (only the aggregator
    /// writes; scrapes are the only other takers).
    fn lock(&self) -> std::sync::MutexGuard<'_, SeriesMap> {
        self.series.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn observe(series: &mut SeriesMap, sample: &Sample, route: &Arc<str>) {
        let entry = series.entry((sample.method.clone(), route.clone())).or_default();
        *entry.codes.entry(sample.status).or_default() += 1;
        entry.latency.observe(sample.elapsed);
    }

    /// The request series in the Prometheus text format.
    pub fn render(&self, out: &mut Exposition) {
        let series = self.lock();
        // Sorted, so scrapes read alike.
        let series: BTreeMap<(&str, &str), &Series> =
            series.iter().map(|((m, r), s)| ((m.as_str(), &**r), s)).collect();
        out.family(
            "gateway_http_requests_total",
            Kind::Counter,
            "Requests answered, by method, route template and status code.",
        );
        for ((method, route), s) in &series {
            for (code, n) in &s.codes {
                let code = code.to_string();
                let labels = [("method", *method), ("route", *route), ("code", code.as_str())];
                out.sample("gateway_http_requests_total", &labels, n);
            }
        }
        out.family(
            "gateway_http_request_duration_seconds",
            Kind::Histogram,
            "Time to answer a request, by method and route template.",
        );
        for ((method, route), s) in &series {
            let labels = [("method", *method), ("route", *route)];
            s.latency.write(out, "gateway_http_request_duration_seconds", &labels);
        }
        for (name, kind, help, value) in [
            (
                "gateway_usage_reports_sent_total",
                Kind::Counter,
                "Usage reports analytics-service accepted.",
                &self.reports_sent,
            ),
            (
                "gateway_usage_reports_failed_total",
                Kind::Counter,
                "Attempts to send a usage report that failed (it is kept and sent again).",
                &self.reports_failed,
            ),
            (
                "gateway_usage_reports_waiting",
                Kind::Gauge,
                "Usage reports waiting for analytics-service.",
                &self.reports_waiting,
            ),
        ] {
            out.single(name, kind, help, value.load(Ordering::Relaxed));
        }
    }
}
