//! One client request is one trace: a message sent through the gateway,
//! with the client's own `traceparent`, arrives at a local OTLP collector
//! as the gateway's HTTP span, its gRPC call, chatbot-service's handling
//! and SQL, the event's publication, the dispatcher's processing and the
//! webhook attempt, each the child of the hop before it.
//!
//! Every service runs in this test's process, so they share one tracer
//! (`service.name` is the test's); the parent links are what crosses the
//! process boundaries in production: gRPC metadata, the outbox column and
//! the AMQP header, the dispatcher's stored event.

use std::time::Duration;

use e2e::{
    TestStack,
    otlp_collector::{Collector, Exported},
    webhook_receiver::Receiver,
};
use reqwest::Method;
use serde_json::json;
use service_runtime::telemetry::{self, Logs, TraceSettings};

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_send_is_one_trace_from_the_gateway_to_the_webhook_attempt() {
    let (collector, endpoint) = Collector::start().await;
    let logs = if std::env::var_os("E2E_LOG").is_some() {
        Logs::Json
    } else {
        Logs::Off
    };
    let settings = TraceSettings {
        otlp_endpoint: Some(endpoint),
        service_name: Some("e2e-tracing".into()),
    };
    let telemetry = telemetry::init_with(settings, logs, "e2e");
    assert!(telemetry::exporting(), "this test's process exports traces");

    let stack = TestStack::start().await;
    let receiver = Receiver::start().await;
    let subscribed = stack
        .client
        .post(
            "/api/v1/webhooks/endpoints",
            json!({"url": receiver.url, "event_types": ["message.received"]}),
        )
        .await;
    assert_eq!(subscribed.status, 200, "{}", subscribed.text);
    let conversation = stack.client.create_conversation("traced-customer").await;

    let request = stack
        .client
        .request(Method::POST, &format!("/api/v1/conversations/{conversation}/messages"))
        .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
        .json(&json!({"role": "user", "content": "where is my order?"}));
    let sent = e2e::Client::send(request).await;
    assert_eq!(sent.status, 200, "{}", sent.text);
    let webhooks = receiver.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(webhooks[0].json()["event"], "message.received");

    let trace = collect(&telemetry, &collector).await;
    let gateway = only(
        &trace,
        "server",
        "POST /api/v1/conversations/{conversation_id}/messages",
    );
    assert_eq!(
        gateway.parent_span_id, CLIENT_SPAN,
        "the client's traceparent is honoured"
    );
    assert_eq!(gateway.attribute("http.request.method"), "POST");
    assert_eq!(
        gateway.attribute("http.route"),
        "/api/v1/conversations/{conversation_id}/messages"
    );
    assert_eq!(gateway.attribute("http.response.status_code"), "200");
    assert!(gateway.attribute("request_id").starts_with("req_"));

    let call = only(&trace, "client", "chatbot.v1.MessageService/SendMessage");
    assert_eq!(call.parent_span_id, gateway.span_id);
    assert_eq!(call.attribute("rpc.system"), "grpc");
    assert_eq!(call.attribute("rpc.grpc.status_code"), "0");
    let handled = only(&trace, "server", "chatbot.v1.MessageService/SendMessage");
    assert_eq!(
        handled.parent_span_id, call.span_id,
        "gRPC metadata carries the context"
    );
    assert_eq!(handled.attribute("request_id"), gateway.attribute("request_id"));

    let insert = only(&trace, "client", "INSERT messages");
    assert_eq!(insert.attribute("db.system.name"), "postgresql");
    assert!(descends(&trace, insert, handled), "the SQL runs inside the handler");

    let publish = only(&trace, "producer", &format!("publish {}", stack.exchange));
    assert!(descends(&trace, publish, handled), "the outbox row carries the context");
    assert_eq!(publish.attribute("messaging.system"), "rabbitmq");
    assert_eq!(
        publish.attribute("messaging.rabbitmq.destination.routing_key"),
        "message.received"
    );
    let event_id = webhooks[0].json()["id"].as_str().unwrap().to_owned();
    assert_eq!(publish.attribute("messaging.message.id"), event_id);

    let process = trace
        .iter()
        .find(|s| s.kind == "consumer" && s.attribute("messaging.message.id") == event_id)
        .unwrap_or_else(|| panic!("no span processed {event_id}: {trace:#?}"));
    assert_eq!(
        process.parent_span_id, publish.span_id,
        "the AMQP header carries the context"
    );
    let attempt = only(&trace, "client", "POST");
    assert_eq!(attempt.parent_span_id, process.span_id);
    assert_eq!(attempt.attribute("http.response.status_code"), "200");
    assert_eq!(attempt.attribute("http.request.resend_count"), "0");
    assert!(!attempt.failed && !gateway.failed && !handled.failed);
    assert!(trace.iter().all(|s| s.service == "e2e-tracing"));

    stack.stop().await;
}

/// The spans of the client's trace, once the webhook attempt's has arrived.
async fn collect(telemetry: &telemetry::Telemetry, collector: &Collector) -> Vec<Exported> {
    for _ in 0..50 {
        telemetry.flush().await;
        let trace: Vec<Exported> = collector
            .spans()
            .into_iter()
            .filter(|s| s.trace_id == CLIENT_TRACE)
            .collect();
        if trace.iter().any(|s| s.kind == "client" && s.name == "POST") {
            return trace;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the trace never arrived whole: {:#?}", collector.spans());
}

fn only<'a>(trace: &'a [Exported], kind: &str, name: &str) -> &'a Exported {
    let found: Vec<&Exported> = trace.iter().filter(|s| s.kind == kind && s.name == name).collect();
    match found.as_slice() {
        [span] => span,
        _ => panic!("expected one {kind} span {name:?}, found {}: {trace:#?}", found.len()),
    }
}

/// Whether `span` sits under `ancestor` in the trace.
fn descends(trace: &[Exported], span: &Exported, ancestor: &Exported) -> bool {
    let mut parent = span.parent_span_id.clone();
    while let Some(next) = trace.iter().find(|s| s.span_id == parent) {
        if next.span_id == ancestor.span_id {
            return true;
        }
        parent = next.parent_span_id.clone();
    }
    false
}
