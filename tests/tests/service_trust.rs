//! Services believe only the gateway (and each other, for the calls the
//! platform makes): every RPC of every service, called directly, refuses a
//! principal without a valid call token, a token moved to another
//! workspace or RPC, an expired one, and a principal lacking the RPC's
//! scope. The RPCs come from the descriptor set, so new ones are covered.

use e2e::TestStack;
use http::{HeaderValue, uri::PathAndQuery};
use service_runtime::{
    calls::{self, CallKeys, Party, Signed, scopes},
    principal::{SCOPES, WORKSPACE_ID},
};
use tonic::{
    Code, Request, Status,
    codegen::{Body, Bytes, StdError},
    metadata::MetadataValue,
    transport::Channel,
};
use tonic_prost::ProstCodec;

/// Every RPC of the platform's services: (upstream, path).
fn every_rpc() -> Vec<(&'static str, String)> {
    let pool = prost_reflect::DescriptorPool::decode(proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut rpcs = Vec::new();
    for service in pool.services() {
        let upstream = match service.package_name() {
            "chatbot.v1" => "chatbot",
            "integration.v1" => "integration",
            "analytics.v1" => "analytics",
            "webhooks.v1" => "webhooks",
            _ => continue,
        };
        for method in service.methods() {
            rpcs.push((upstream, format!("/{}/{}", service.full_name(), method.name())));
        }
    }
    assert!(rpcs.len() > 60, "{} RPCs", rpcs.len());
    rpcs
}

fn addr_of<'a>(stack: &'a TestStack, upstream: &str) -> &'a str {
    &stack.grpc_addrs.iter().find(|(n, _)| *n == upstream).unwrap().1
}

async fn raw_channel(stack: &TestStack, upstream: &str) -> Channel {
    Channel::from_shared(format!("http://{}", addr_of(stack, upstream)))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Calls `path` with an empty request (valid for every message type) and
/// `metadata`, through whatever `channel` adds.
async fn call<C>(
    channel: C,
    path: &str,
    workspace: &str,
    scopes: &str,
    extra: Option<(&'static str, HeaderValue)>,
) -> Status
where
    C: tonic::client::GrpcService<tonic::body::Body>,
    C::Error: Into<StdError>,
    C::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <C::ResponseBody as Body>::Error: Into<StdError> + Send,
{
    let mut request = Request::new(());
    request
        .metadata_mut()
        .insert(WORKSPACE_ID, MetadataValue::try_from(workspace).unwrap());
    request
        .metadata_mut()
        .insert(SCOPES, MetadataValue::try_from(scopes).unwrap());
    if let Some((key, value)) = extra {
        request
            .metadata_mut()
            .insert(key, MetadataValue::try_from(value.to_str().unwrap()).unwrap());
    }
    let mut client = tonic::client::Grpc::new(channel);
    let ready: Result<(), StdError> = client.ready().await.map_err(Into::into);
    ready.expect("the channel is ready");
    let path = PathAndQuery::try_from(path.to_owned()).unwrap();
    match client.unary(request, path, ProstCodec::<(), ()>::default()).await {
        Ok(_) => Status::ok(""),
        Err(status) => status,
    }
}

const EVERY_SCOPE: &str = "read:bots write:bots read:conversations write:conversations write:messages \
    read:messages manage:integrations read:analytics manage:webhooks";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_refuses_a_principal_no_trusted_caller_vouches_for() {
    let stack = TestStack::start().await;
    let stranger = CallKeys::parse(Party::Gateway, &calls::keys::generate()).unwrap();
    let mut tried = 0;
    for (upstream, path) in every_rpc() {
        let channel = raw_channel(&stack, upstream).await;
        // Forged metadata alone, as anything on the network could send.
        let status = call(channel.clone(), &path, &stack.workspace_id, EVERY_SCOPE, None).await;
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{path} without a token: {status:?}"
        );
        // A well-formed token under a key this deployment never issued.
        let callee = upstream.parse().unwrap();
        let signed = Signed::new(channel, &stranger, callee).unwrap();
        let status = call(signed, &path, &stack.workspace_id, EVERY_SCOPE, None).await;
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{path} with a stranger's token: {status:?}"
        );
        tried += 2;
    }
    println!("{tried} forged calls refused with UNAUTHENTICATED");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scoped_rpc_checks_the_scope_itself() {
    let stack = TestStack::start().await;
    let mut refused = 0;
    for (upstream, path) in every_rpc() {
        let Some(scope) = scopes::required(&path) else { continue };
        let channel = stack.gateway_channel(upstream);
        let status = call(channel, &path, &stack.workspace_id, "read:nothing", None).await;
        assert_eq!(status.code(), Code::PermissionDenied, "{path}: {status:?}");
        assert_eq!(status.message(), format!("this call needs the {scope} scope"));
        refused += 1;
    }
    println!("{refused} scoped RPCs refused a principal without their scope");
    assert!(refused > 40);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_good_for_its_own_workspace_rpc_and_deadline_only() {
    let stack = TestStack::start().await;
    let bot = stack
        .client
        .post("/api/v1/bots", serde_json::json!({"name": "Trusted"}))
        .await;
    assert_eq!(bot.status, 200, "{}", bot.text);
    let bot_id = bot.json["id"].as_str().unwrap().to_owned();
    let (_, other_workspace) = stack.create_workspace("another workspace").await;
    let get_bot = "/chatbot.v1.BotService/GetBot";
    let get =
        |workspace: String| proto::chatbot::v1::GetBotRequest { bot_id: bot_id.clone() }.with_principal(&workspace);

    // Signed as the gateway signs: the bot is found.
    let mut bots = proto::chatbot::v1::bot_service_client::BotServiceClient::new(stack.gateway_channel("chatbot"));
    let found = bots
        .get_bot(get(stack.workspace_id.clone()))
        .await
        .expect("the owner's token works");
    assert_eq!(found.into_inner().id, bot_id);

    // The same signed call with the workspace swapped after signing.
    let raw = raw_channel(&stack, "chatbot").await;
    let other = other_workspace.clone();
    let swapped = tower::ServiceBuilder::new()
        .map_request(move |mut request: http::Request<tonic::body::Body>| {
            request
                .headers_mut()
                .insert(WORKSPACE_ID, HeaderValue::try_from(other.as_str()).unwrap());
            request
        })
        .service(raw.clone());
    let replayed = Signed::new(swapped, &stack.keys_of(Party::Gateway), Party::Chatbot).unwrap();
    let status = proto::chatbot::v1::bot_service_client::BotServiceClient::new(replayed)
        .get_bot(get(stack.workspace_id.clone()))
        .await
        .expect_err("a token moved to another workspace");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    // Signed for one RPC, sent to another.
    let rerouted = tower::ServiceBuilder::new()
        .map_request(|mut request: http::Request<tonic::body::Body>| {
            *request.uri_mut() = request
                .uri()
                .to_string()
                .replace("GetBot", "DeleteBot")
                .parse()
                .unwrap();
            request
        })
        .service(raw.clone());
    let rerouted = Signed::new(rerouted, &stack.keys_of(Party::Gateway), Party::Chatbot).unwrap();
    let status = call(rerouted, get_bot, &stack.workspace_id, "write:bots read:bots", None).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let still_there = bots.get_bot(get(stack.workspace_id.clone())).await;
    assert!(still_there.is_ok(), "the bot was not deleted");

    // A token whose deadline has passed.
    let mut headers = http::HeaderMap::new();
    headers.insert(
        WORKSPACE_ID,
        HeaderValue::try_from(stack.workspace_id.as_str()).unwrap(),
    );
    headers.insert(SCOPES, HeaderValue::from_static("read:bots"));
    let expired = stack
        .keys_of(Party::Gateway)
        .token(Party::Chatbot, get_bot, &headers, calls::signing::now_ms() - 120_000)
        .unwrap();
    let status = call(
        raw,
        get_bot,
        &stack.workspace_id,
        "read:bots",
        Some((calls::TOKEN, expired)),
    )
    .await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(status.message(), "the call token has expired");
    stack.stop().await;
}

trait WithPrincipal: Sized {
    fn with_principal(self, workspace: &str) -> Request<Self>;
}

impl<T> WithPrincipal for T {
    fn with_principal(self, workspace: &str) -> Request<Self> {
        let mut request = Request::new(self);
        request
            .metadata_mut()
            .insert(WORKSPACE_ID, MetadataValue::try_from(workspace).unwrap());
        request
            .metadata_mut()
            .insert(SCOPES, MetadataValue::from_static("read:bots"));
        request
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_mutual_tls_the_stack_serves_and_refuses_callers_without_a_certificate() {
    let stack = TestStack::start_with(e2e::Options {
        grpc_tls: true,
        ..e2e::Options::default()
    })
    .await;
    let api = &stack.client;
    // The gateway to every service, and analytics-service to chatbot-service.
    let bot = api.post("/api/v1/bots", serde_json::json!({"name": "Over TLS"})).await;
    assert_eq!(bot.status, 200, "{}", bot.text);
    let bot_id = bot.json["id"].as_str().unwrap();
    let conversation = api.create_conversation("u").await;
    api.send_message(&conversation, "hello over TLS").await;
    let stats = api.get(&format!("/api/v1/analytics/bots/{bot_id}")).await;
    assert_eq!(stats.status, 200, "{}", stats.text);
    for path in ["/api/v1/webhooks/endpoints", "/api/v1/integrations"] {
        let listed = api.get(path).await;
        assert_eq!(listed.status, 200, "{path}: {}", listed.text);
    }

    let addr = addr_of(&stack, "chatbot");
    // Plaintext gRPC to a TLS port gets nowhere.
    let plain = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await;
    if let Ok(channel) = plain {
        let status = call(
            channel,
            "/chatbot.v1.BotService/ListBots",
            &stack.workspace_id,
            "read:bots",
            None,
        )
        .await;
        assert_ne!(status.code(), Code::Ok, "{status:?}");
    }
    // A client that trusts the authority but has no certificate of its own.
    let ca = tonic::transport::Certificate::from_pem(stack.tls.authority().unwrap());
    // Everything as the stack's own (working) channels have it, but the
    // client certificate.
    let anonymous = tonic::transport::ClientTlsConfig::new().ca_certificate(ca);
    let channel = Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(anonymous)
        .unwrap()
        .connect()
        .await;
    match channel {
        Err(_) => {}
        Ok(channel) => {
            let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
            let answer = health.check(tonic_health::pb::HealthCheckRequest::default()).await;
            assert!(answer.is_err(), "a caller without a certificate is refused: {answer:?}");
        }
    }
    // The signed channel the stack's gateway would use works.
    let mut bots = proto::chatbot::v1::bot_service_client::BotServiceClient::new(stack.gateway_channel("chatbot"));
    let found = bots
        .get_bot(
            proto::chatbot::v1::GetBotRequest {
                bot_id: bot_id.to_owned(),
            }
            .with_principal(&stack.workspace_id),
        )
        .await;
    assert!(found.is_ok(), "{found:?}");
    stack.stop().await;
}
