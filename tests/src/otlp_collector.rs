//! An OTLP/gRPC trace collector on loopback: the standard collector
//! service, generated from the OpenTelemetry protos, keeping every span it
//! is sent, so a test can read back what the services exported.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::any_value::Value,
    trace::v1::Span,
};
use tokio::net::TcpListener;

/// A span as exported, with its `service.name` and attributes as text.
#[derive(Debug, Clone)]
pub struct Exported {
    pub service: String,
    pub name: String,
    pub kind: &'static str,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub attributes: HashMap<String, String>,
    pub failed: bool,
}

impl Exported {
    pub fn attribute(&self, key: &str) -> &str {
        self.attributes.get(key).map_or("", String::as_str)
    }
}

#[derive(Clone, Default)]
pub struct Collector {
    spans: Arc<Mutex<Vec<Exported>>>,
}

impl Collector {
    /// Serves on `127.0.0.1:0`; the endpoint to export to.
    pub async fn start() -> (Self, String) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port for the OTLP collector");
        let addr = listener.local_addr().expect("a bound address");
        let collector = Self::default();
        let service = TraceServiceServer::new(collector.clone());
        tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        (collector, format!("http://{addr}"))
    }

    pub fn spans(&self) -> Vec<Exported> {
        self.spans.lock().expect("lock").clone()
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut kept = self.spans.lock().expect("lock");
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .map(|a| text(a.value.as_ref().and_then(|v| v.value.as_ref())))
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                kept.extend(scope.spans.into_iter().map(|span| exported(&service, span)));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn exported(service: &str, span: Span) -> Exported {
    const KINDS: [&str; 6] = ["unspecified", "internal", "server", "client", "producer", "consumer"];
    Exported {
        service: service.to_owned(),
        kind: KINDS.get(span.kind as usize).copied().unwrap_or("unspecified"),
        trace_id: hex(&span.trace_id),
        span_id: hex(&span.span_id),
        parent_span_id: hex(&span.parent_span_id),
        attributes: span
            .attributes
            .iter()
            .map(|a| (a.key.clone(), text(a.value.as_ref().and_then(|v| v.value.as_ref()))))
            .collect(),
        // 2 is STATUS_CODE_ERROR.
        failed: span.status.as_ref().is_some_and(|s| s.code == 2),
        name: span.name,
    }
}

fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(n)) => n.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(x)) => x.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
