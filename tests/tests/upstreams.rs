//! The gateway protecting its upstreams: a service that stops mid-run
//! yields fast 503s behind an open circuit and traffic recovers when it
//! returns; a failed replica leaves the rotation while the others serve;
//! one stuck from the start never joins it.

use std::time::{Duration, Instant};

use e2e::{Options, TestStack};
use gateway::upstreams::replicas::Health;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_upstream_gets_fast_503s_then_traffic_recovers_when_it_returns() {
    let mut stack = TestStack::start().await;
    let path = "/api/v1/analytics/requests";
    assert_eq!(stack.client.get(path).await.status, 200);

    stack.stop_service("analytics", 0).await;
    let mut kinds = Vec::new();
    for _ in 0..6 {
        let started = Instant::now();
        let reply = stack.client.get(path).await;
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "a 503 took {:?}",
            started.elapsed()
        );
        assert_eq!(reply.status, 503, "{}", reply.text);
        assert!(reply.header("retry-after").is_some());
        kinds.push(
            reply.json["type"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned(),
        );
    }
    assert!(
        kinds.iter().any(|k| k == "upstream-circuit-open"),
        "the circuit opened: {kinds:?}"
    );
    assert_eq!(
        stack.client.get("/api/v1/conversations").await.status,
        200,
        "other upstreams are unaffected"
    );

    stack.restart_service("analytics", 0).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if stack.client.get(path).await.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "traffic did not recover within 10 s of the service returning"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_replica_leaves_the_rotation_while_the_others_serve() {
    let mut stack = TestStack::start_with(Options {
        chatbot_replicas: 2,
        ..Options::default()
    })
    .await;
    let conv = stack.client.create_conversation("u").await;
    stack.stop_service("chatbot", 0).await;
    // Two failed health checks for the gateway to take it out of rotation.
    tokio::time::sleep(gateway::upstreams::replicas::REMOVAL_DELAY + Duration::from_millis(500)).await;

    for i in 0..10 {
        let read = stack.client.get(&format!("/api/v1/conversations/{conv}")).await;
        assert_eq!(read.status, 200, "read {i}: {}", read.text);
        let write = stack
            .client
            .post(
                &format!("/api/v1/conversations/{conv}/messages"),
                json!({"role": "user", "content": format!("m{i}")}),
            )
            .await;
        assert_eq!(write.status, 200, "write {i}: {}", write.text);
    }
    let ready = stack.gateway_admin().get("/readyz").await;
    assert_eq!(ready.status, 200, "one healthy replica keeps the upstream ready");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stuck_from_the_start_is_never_sent_a_call() {
    let stack = TestStack::start_with(Options {
        stuck_replicas: vec!["chatbot"],
        ..Options::default()
    })
    .await;
    // Right after the stack reports ready: a replica joins the rotation only
    // once it answers SERVING, so none of these waits on the stuck one.
    for i in 0..20 {
        let started = Instant::now();
        let reply = stack.client.get("/api/v1/conversations").await;
        assert_eq!(reply.status, 200, "call {i}: {}", reply.text);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "call {i} took {:?}: it went to the stuck replica",
            started.elapsed()
        );
    }
    let ready = stack.gateway_admin().get("/readyz").await;
    assert_eq!(ready.status, 200, "one serving replica makes the upstream ready");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_serves_only_once_its_queue_is_bound() {
    let mut stack = TestStack::start().await;
    let broker = e2e::tcp_proxy::TcpProxy::start("127.0.0.1:5672").await;
    broker.cut();
    stack.set_dispatcher_amqp_url(&format!("amqp://guest:guest@{}/%2f", broker.addr));
    let addr = stack.replica_addr("webhooks", 0);
    stack.stop_service("webhooks", 0).await;
    stack.restart_service("webhooks", 0).await;

    let health = || {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy();
        gateway::upstreams::replicas::health(channel)
    };
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_eq!(
            health().await,
            Health::NotServing,
            "SERVING while its queue cannot be bound: events published now would be lost"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let endpoints = stack.client.get("/api/v1/webhooks/endpoints").await;
    assert_eq!(
        endpoints.status, 503,
        "the gateway sends it nothing: {}",
        endpoints.text
    );

    broker.restore();
    stack.wait_until_in_rotation(&addr).await;
    assert_eq!(stack.client.get("/api/v1/webhooks/endpoints").await.status, 200);
    stack.stop().await;
}
