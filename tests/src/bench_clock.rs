//! What every benchmark reports besides its own figures, so they can be
//! judged on a shared machine: the load average before it starts, and the
//! CPU time spent per unit of work. The CPU is that of the benchmark's own
//! process (the services and the load generator, which run in it) and,
//! separately, that of the PostgreSQL and RabbitMQ processes, read from
//! `/proc`.

use std::{fs, time::Duration};

/// `/proc` reports CPU time in clock ticks of this many milliseconds
/// (USER_HZ, fixed at 100 a second on Linux whatever the kernel's tick).
const TICK_MS: u64 = 10;

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` has them.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Prints the line every benchmark starts with.
pub fn print_machine(name: &str) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "\n{name} benchmark on {cores} cores, load average {} before it starts",
        load_average()
    );
}

/// CPU time used so far, split by who used it.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTime {
    /// This process: the services and the load generator.
    pub process: Duration,
    /// PostgreSQL's and RabbitMQ's processes.
    pub backing: Duration,
}

impl CpuTime {
    pub fn now() -> Self {
        Self {
            process: process_cpu("self").unwrap_or_default(),
            backing: backing_cpu(),
        }
    }

    /// The time used since `earlier`, per unit of `units` of work, as
    /// "a µs (process) + b µs (PostgreSQL, RabbitMQ)".
    pub fn per_unit_since(&self, earlier: &CpuTime, units: usize) -> String {
        let per = |now: Duration, then: Duration| now.saturating_sub(then).as_secs_f64() * 1e6 / units.max(1) as f64;
        format!(
            "{:.0} µs in this process + {:.0} µs in PostgreSQL and RabbitMQ",
            per(self.process, earlier.process),
            per(self.backing, earlier.backing)
        )
    }
}

/// User plus system time of process `pid` (or `self`), children excluded.
fn process_cpu(pid: &str) -> Option<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold
    // spaces: state is the first; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * TICK_MS))
}

/// The CPU time of every PostgreSQL and RabbitMQ process on the machine.
fn backing_cpu() -> Duration {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Duration::ZERO;
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().into_string().ok()?;
            pid.bytes().all(|b| b.is_ascii_digit()).then_some(pid)
        })
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|name| matches!(name.trim(), "postgres" | "beam.smp" | "erl_child_setup" | "epmd"))
        })
        .filter_map(|pid| process_cpu(&pid))
        .sum()
}
