//! Logs and traces, set up once by every binary.
//!
//! Logs are one JSON object per line (`LOG_FORMAT=text` for people at a
//! terminal), filtered by `RUST_LOG` (default `info`); each line carries
//! the fields of the spans it was written in (the request id, the gRPC
//! method) and, when traces are exported, the trace and span ids.
//!
//! Traces leave over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` is set,
//! named by `OTEL_SERVICE_NAME` (default: the binary's name); the SDK's
//! other standard variables (`OTEL_BSP_*`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER`) apply too. Unset, nothing is exported and
//! [`propagation`] does no work, so the hot paths pay nothing for it.

mod json_log;
pub mod propagation;
pub mod spans;

use std::sync::{
    OnceLock,
    atomic::{AtomicBool, Ordering},
};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing::Dispatch;
use tracing_subscriber::{EnvFilter, Layer, filter::LevelFilter, fmt, layer::SubscriberExt, util::SubscriberInitExt};

static EXPORTING: AtomicBool = AtomicBool::new(false);
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Whether spans are being exported (and so worth propagating).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Where traces go and what they are called.
#[derive(Debug, Clone, Default)]
pub struct TraceSettings {
    /// An OTLP/gRPC collector, such as `http://otel-collector:4317`.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of every span; `None` leaves it to
    /// `OTEL_SERVICE_NAME`.
    pub service_name: Option<String>,
}

impl TraceSettings {
    /// The standard variables; `service` names the spans when
    /// `OTEL_SERVICE_NAME` does not.
    pub fn from_env(service: &str) -> Self {
        let set = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Self {
            otlp_endpoint: set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT")),
            service_name: set("OTEL_SERVICE_NAME").is_none().then(|| service.to_owned()),
        }
    }
}

/// Installs the global subscriber from the environment. Call inside the
/// Tokio runtime (the exporter's channel lives on it), and call
/// [`Telemetry::shutdown`] before exiting so the last spans leave.
pub fn init(service: &'static str) -> Telemetry {
    let logs = match std::env::var("LOG_FORMAT").as_deref() {
        Ok("text") => Logs::Text,
        _ => Logs::Json,
    };
    init_with(TraceSettings::from_env(service), logs, service)
}

/// How log lines are written (to standard output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logs {
    Json,
    Text,
    /// None at all (a test that only wants the traces).
    Off,
}

/// [`init`] with explicit trace settings. Only the first call in a process
/// installs anything; later ones return a handle that flushes the first's
/// exporter.
pub fn init_with(traces: TraceSettings, logs: Logs, service: &'static str) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let provider =
        traces
            .otlp_endpoint
            .as_deref()
            .and_then(|endpoint| match provider(endpoint, traces.service_name.clone()) {
                Ok(provider) => Some(provider),
                Err(error) => {
                    eprintln!("{service}: traces are off: {error}");
                    None
                }
            });
    // Each its own filter: RUST_LOG=warn quiets the logs, not the traces.
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer(service))
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_filter(LevelFilter::INFO)
    });
    let format = json_log::JsonLines::default();
    let format_handle = format.handle();
    let logs = match logs {
        Logs::Text => Some(fmt::layer().with_filter(filter).boxed()),
        Logs::Json => Some(
            fmt::layer()
                .fmt_fields(fmt::format::JsonFields::new())
                .event_format(format)
                .with_filter(filter)
                .boxed(),
        ),
        Logs::Off => None,
    };
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(otel).with(logs));
    json_log::JsonLines::attach(&format_handle, &dispatch);
    let installed = dispatch.try_init().is_ok();
    if installed && let Some(provider) = provider {
        let _ = PROVIDER.set(provider);
        EXPORTING.store(true, Ordering::Relaxed);
    }
    if installed {
        tracing::info!(service, traces = exporting(), "telemetry initialised");
    }
    Telemetry { _private: () }
}

fn provider(
    endpoint: &str,
    service_name: Option<String>,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()?;
    let mut resource = Resource::builder();
    if let Some(name) = service_name {
        resource = resource.with_service_name(name);
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

/// The installed telemetry; flushes spans on request and on shutdown.
#[must_use = "call shutdown() before exiting so the last spans are exported"]
pub struct Telemetry {
    _private: (),
}

impl Telemetry {
    /// Exports every finished span now (tests call it before reading what
    /// a collector received).
    pub async fn flush(&self) {
        if let Some(provider) = PROVIDER.get() {
            // The exporter blocks its caller while the runtime drives the
            // call, so it runs off the runtime's threads.
            let provider = provider.clone();
            let _ = tokio::task::spawn_blocking(move || provider.force_flush()).await;
        }
    }

    /// Exports what is left and stops the exporter.
    pub async fn shutdown(self) {
        if let Some(provider) = PROVIDER.get() {
            let provider = provider.clone();
            EXPORTING.store(false, Ordering::Relaxed);
            let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        }
    }
}
