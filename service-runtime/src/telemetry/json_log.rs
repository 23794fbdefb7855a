//! One JSON object per log line: time, level, target, the event's fields,
//! the fields of every span it was written in (innermost wins), and the
//! trace and span ids when traces are exported, so a log search and a
//! trace view find each other.

use std::{
    fmt,
    sync::{Arc, OnceLock},
};

use opentelemetry::trace::{SpanContext, TraceContextExt};
use serde_json::{Map, Value};
use tracing::{Dispatch, Event, Subscriber, dispatcher::WeakDispatch, field::Field};
use tracing_subscriber::{
    fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, format::Writer},
    registry::LookupSpan,
};

/// The formatter; [`JsonLines::attach`] it to the dispatch it runs in, so
/// it can ask the OpenTelemetry layer for a span's ids (a formatter cannot
/// reach the current dispatch while it handles an event).
#[derive(Default)]
pub struct JsonLines {
    dispatch: Arc<OnceLock<WeakDispatch>>,
}

impl JsonLines {
    /// What [`JsonLines::attach`] needs once the formatter is moved into a
    /// subscriber.
    pub fn handle(&self) -> Arc<OnceLock<WeakDispatch>> {
        self.dispatch.clone()
    }

    pub fn attach(handle: &OnceLock<WeakDispatch>, dispatch: &Dispatch) {
        let _ = handle.set(dispatch.downgrade());
    }

    /// The trace and span ids of `span`, when traces are recorded.
    fn ids(&self, span: &tracing::span::Id) -> Option<SpanContext> {
        let dispatch = self.dispatch.get()?.upgrade()?;
        let context = tracing_opentelemetry::get_otel_context(span, &dispatch)?;
        let ids = context.span().span_context().clone();
        ids.is_valid().then_some(ids)
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        line.insert("timestamp".into(), now.into());
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<N>>() else {
                    continue;
                };
                // JsonFields wrote them as an object.
                if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields) {
                    line.extend(fields.into_iter().filter(|(k, _)| !k.starts_with("otel.")));
                }
            }
        }
        event.record(&mut Fields(&mut line));
        // Without the OpenTelemetry layer this finds no context, cheaply.
        if let Some(span) = ctx.lookup_current()
            && let Some(ids) = self.ids(&span.id())
        {
            line.insert("trace_id".into(), ids.trace_id().to_string().into());
            line.insert("span_id".into(), ids.span_id().to_string().into());
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

struct Fields<'a>(&'a mut Map<String, Value>);

impl tracing::field::Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::{fmt, layer::SubscriberExt};

    use super::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(with_traces: bool, write: impl FnOnce()) -> Vec<Value> {
        let lines = Lines::default();
        let sink = lines.clone();
        let format = JsonLines::default();
        let handle = format.handle();
        let logs = fmt::layer()
            .fmt_fields(fmt::format::JsonFields::new())
            .event_format(format)
            .with_writer(move || sink.clone());
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let otel = with_traces.then(|| tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let dispatch = Dispatch::new(tracing_subscriber::registry().with(otel).with(logs));
        JsonLines::attach(&handle, &dispatch);
        tracing::dispatcher::with_default(&dispatch, write);
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
            .collect()
    }

    #[test]
    fn a_line_carries_its_fields_and_those_of_its_spans() {
        let lines = logged(false, || {
            let span = tracing::info_span!(
                "grpc",
                method = "/chatbot.v1.MessageService/SendMessage",
                request_id = "req_1"
            );
            let _entered = span.enter();
            tracing::warn!(attempt = 2, "upstream \"slow\"");
        });
        let [line] = lines.as_slice() else { panic!("{lines:?}") };
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["message"], "upstream \"slow\"");
        assert_eq!(line["attempt"], 2);
        assert_eq!(line["request_id"], "req_1");
        assert_eq!(line["method"], "/chatbot.v1.MessageService/SendMessage");
        assert!(chrono::DateTime::parse_from_rfc3339(line["timestamp"].as_str().unwrap()).is_ok());
        assert!(line.get("trace_id").is_none(), "no trace without traces");
    }

    #[test]
    fn with_traces_a_line_names_its_trace_and_span() {
        let lines = logged(true, || {
            let span = tracing::info_span!("request", otel.kind = "server", request_id = "req_2");
            let _entered = span.enter();
            tracing::info!("handled");
        });
        let [line] = lines.as_slice() else { panic!("{lines:?}") };
        assert_eq!(line["trace_id"].as_str().map(str::len), Some(32));
        assert_eq!(line["span_id"].as_str().map(str::len), Some(16));
        assert_eq!(line["request_id"], "req_2");
        assert!(
            line.get("otel.kind").is_none(),
            "span settings for the exporter stay out"
        );
    }
}
