//! What every service offers to gRPC clients and to Kubernetes, whatever
//! its features: standard health and reflection, and a clean drain on
//! shutdown.

use e2e::TestStack;
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

const SERVICES: &[(&str, &[&str])] = &[
    (
        "chatbot",
        &[
            "chatbot.v1.ConversationService",
            "chatbot.v1.MessageService",
            "chatbot.v1.BotService",
        ],
    ),
    ("integration", &["integration.v1.IntegrationService"]),
    ("analytics", &["analytics.v1.AnalyticsService"]),
    ("webhooks", &["webhooks.v1.WebhookService"]),
];

async fn listed_services(channel: Channel) -> Vec<String> {
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection answers")
        .into_inner();
    let reply = replies
        .message()
        .await
        .expect("a reflection reply")
        .expect("one message");
    match reply.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => list.service.into_iter().map(|s| s.name).collect(),
        other => panic!("unexpected reflection reply {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_serves_grpc_health_and_reflection() {
    let stack = TestStack::start().await;
    for (name, addr) in &stack.grpc_addrs {
        let expected = SERVICES.iter().find(|(n, _)| n == name).expect("known upstream").1;
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();

        let mut health = HealthClient::new(channel.clone());
        for service in expected.iter().copied().chain([""]) {
            let status = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap_or_else(|e| panic!("{name}: health of {service:?}: {e}"))
                .into_inner()
                .status;
            assert_eq!(status, ServingStatus::Serving as i32, "{name}: {service:?} is SERVING");
        }

        let listed = listed_services(channel).await;
        for service in expected {
            assert!(
                listed.iter().any(|s| s == service),
                "{name} lists {service} via reflection: {listed:?}"
            );
        }
        assert!(listed.iter().any(|s| s == "grpc.health.v1.Health"));
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_is_off_unless_configured() {
    let stack = TestStack::start_with(e2e::Options {
        without_reflection: true,
        ..e2e::Options::default()
    })
    .await;
    for (name, addr) in &stack.grpc_addrs {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let refused = ServerReflectionClient::new(channel)
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect_err("no reflection service");
        assert_eq!(refused.code(), tonic::Code::Unimplemented, "{name}: {refused:?}");
    }
    stack.stop().await;
}
