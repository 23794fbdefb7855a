//! A request summary from status counts and a latency histogram.

use proto::analytics::v1::{LatencyPercentiles, RequestSummary, StatusCount};

use crate::bot_stats::ratio;

/// Requests with one status: (status, requests, slow ones).
pub type StatusRow = (i16, i64, i64);
/// A latency bucket: (upper bound in ms, requests).
pub type Bucket = (f64, i64);

/// Builds the summary of requests counted by `statuses` with latency
/// `buckets`.
pub fn summarise(statuses: &[StatusRow], buckets: &mut [Bucket]) -> RequestSummary {
    let requests: i64 = statuses.iter().map(|s| s.1).sum();
    let client_errors: i64 = statuses.iter().filter(|s| (400..500).contains(&s.0)).map(|s| s.1).sum();
    let server_errors: i64 = statuses.iter().filter(|s| s.0 >= 500).map(|s| s.1).sum();
    let mut counts: Vec<StatusCount> = statuses
        .iter()
        .map(|s| StatusCount {
            status: i32::from(s.0),
            count: s.1,
        })
        .collect();
    counts.sort_by(|a, b| b.count.cmp(&a.count).then(a.status.cmp(&b.status)));
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    RequestSummary {
        requests,
        client_errors,
        server_errors,
        client_error_rate: ratio(client_errors, requests),
        server_error_rate: ratio(server_errors, requests),
        latency: Some(LatencyPercentiles {
            p50_ms: percentile(buckets, 0.50),
            p95_ms: percentile(buckets, 0.95),
            p99_ms: percentile(buckets, 0.99),
        }),
        statuses: counts,
        slow_requests: statuses.iter().map(|s| s.2).sum(),
    }
}

/// The upper bound of the bucket holding the `q` quantile of a histogram
/// sorted by bound; 0 when it is empty.
pub fn percentile(sorted: &[Bucket], q: f64) -> f64 {
    let total: i64 = sorted.iter().map(|b| b.1).sum();
    if total == 0 {
        return 0.0;
    }
    let rank = ((q * total as f64).ceil() as i64).max(1);
    let mut seen = 0;
    for (bound, count) in sorted {
        seen += count;
        if seen >= rank {
            return *bound;
        }
    }
    sorted.last().map_or(0.0, |b| b.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_whole_histogram() {
        // 90 fast requests and 10 slow ones: the median is fast, p95 slow.
        let mut buckets = vec![(100.0, 10), (1.0, 90)];
        let summary = summarise(&[(200, 95, 0), (404, 3, 0), (503, 2, 1)], &mut buckets);
        let latency = summary.latency.unwrap();
        assert_eq!((latency.p50_ms, latency.p95_ms, latency.p99_ms), (1.0, 100.0, 100.0));
        assert_eq!(
            (summary.requests, summary.client_errors, summary.server_errors),
            (100, 3, 2)
        );
        assert_eq!(summary.server_error_rate, 0.02);
        assert_eq!(summary.statuses[0].status, 200);
        assert_eq!(summary.slow_requests, 1);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
