//! The latency buckets of the usage report: upper bounds growing by 25%
//! from 50 µs to over 10 minutes, so any percentile read from them is
//! within 25% of the true value, and histograms from any number of
//! gateways and minutes add up exactly.

use std::time::Duration;

pub const BUCKETS: usize = 75;
const FIRST_MS: f64 = 0.05;
const GROWTH: f64 = 1.25;

/// The upper bound of bucket `index`, in milliseconds.
pub fn upper_bound_ms(index: usize) -> f64 {
    // Rounded to 4 significant digits so the bound reads the same in every
    // process and database that stores it.
    let raw = FIRST_MS * GROWTH.powi(index as i32);
    let scale = 10f64.powi(3 - raw.log10().floor() as i32);
    (raw * scale).round() / scale
}

/// The bucket a request of `elapsed` falls in.
pub fn index_of(elapsed: Duration) -> usize {
    let ms = elapsed.as_secs_f64() * 1000.0;
    if ms <= FIRST_MS {
        return 0;
    }
    let index = ((ms / FIRST_MS).ln() / GROWTH.ln()).ceil() as usize;
    // The float estimate may land one off a bound; settle on the bucket.
    let mut index = index.min(BUCKETS - 1);
    while index > 0 && ms <= upper_bound_ms(index - 1) {
        index -= 1;
    }
    while index < BUCKETS - 1 && ms > upper_bound_ms(index) {
        index += 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_duration_lands_in_the_bucket_bounding_it() {
        for micros in [1, 49, 50, 51, 700, 1000, 1001, 12_345, 250_000, 3_000_000] {
            let elapsed = Duration::from_micros(micros);
            let index = index_of(elapsed);
            let ms = micros as f64 / 1000.0;
            assert!(ms <= upper_bound_ms(index), "{micros} µs above bucket {index}");
            if index > 0 {
                assert!(ms > upper_bound_ms(index - 1), "{micros} µs belongs lower than {index}");
            }
        }
        assert!(upper_bound_ms(BUCKETS - 1) > 600_000.0);
        assert_eq!(index_of(Duration::from_secs(100_000)), BUCKETS - 1);
    }
}
