//! Salesforce: connecting an org with the JWT bearer or client credentials
//! flow (tried first: 422 with Salesforce's reason), and ended
//! conversations becoming leads upserted by the conversation's id, a spent
//! session renewed once, a rejected lead failed with its reason and never
//! retried.

use std::time::Duration;

use e2e::{
    Client, TestStack,
    event_tap::EventTap,
    salesforce_server::{CLIENT_ID, CLIENT_SECRET, CONSUMER_KEY, LEAD_FIELD, PRIVATE_KEY, SalesforceServer, USERNAME},
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);

async fn connect(api: &Client, org: &SalesforceServer, credentials: Value, settings: Value) -> e2e::Reply {
    let mut all = json!({"login_url": org.url});
    all.as_object_mut()
        .unwrap()
        .extend(settings.as_object().unwrap().clone());
    let request = json!({"kind": "salesforce", "name": "Acme CRM", "settings": all, "credentials": credentials});
    api.post("/api/v1/integrations", request).await
}

fn jwt_bearer() -> Value {
    json!({"consumer_key": CONSUMER_KEY, "username": USERNAME, "private_key": PRIVATE_KEY})
}

fn client_credentials() -> Value {
    json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})
}

/// Opens a conversation for `customer` and ends it; its id.
async fn ended_conversation(api: &Client, customer: Value) -> String {
    let created = api
        .post(
            "/api/v1/conversations",
            json!({"user_id": "visitor", "channel": "web", "metadata": {"customer": customer}}),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    let id = created.json["id"].as_str().unwrap().to_owned();
    api.send_message(&id, "I'd like a quote for 200 mugs.").await;
    let ended = api
        .request(reqwest::Method::PATCH, &format!("/api/v1/conversations/{id}"))
        .json(&json!({"status": "ended"}));
    assert_eq!(Client::send(ended).await.status, 200);
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_org_is_connected_by_either_flow_and_refusals_are_salesforces_own() {
    let org = SalesforceServer::start().await;
    let stack = TestStack::start().await;
    let api = &stack.client;

    let connected = connect(api, &org, jwt_bearer(), json!({})).await;
    assert_eq!(connected.status, 200, "{}", connected.text);
    assert_eq!(connected.json["kind"], "salesforce");
    assert_eq!(connected.json["scopes"], json!(["api"]));
    assert_eq!(connected.json["settings"]["lead_external_id_field"], LEAD_FIELD);
    assert!(!connected.text.contains("PRIVATE KEY"), "the key is never shown");
    assert_eq!(connect(api, &org, client_credentials(), json!({})).await.status, 200);

    let wrong = json!({"client_id": CLIENT_ID, "client_secret": "guess"});
    let refused = connect(api, &org, wrong, json!({})).await;
    refused.assert_problem(422, "unprocessable");
    assert!(
        refused.json["detail"]
            .as_str()
            .unwrap()
            .contains("invalid assertion or client credentials")
    );
    let no_field = connect(
        api,
        &org,
        client_credentials(),
        json!({"lead_external_id_field": "Nope__c"}),
    )
    .await;
    no_field.assert_problem(422, "unprocessable");
    assert!(
        no_field.json["detail"]
            .as_str()
            .unwrap()
            .contains("Lead has no field Nope__c")
    );
    let bad_key = json!({"consumer_key": CONSUMER_KEY, "username": USERNAME, "private_key": "-----BEGIN nothing"});
    connect(api, &org, bad_key, json!({}))
        .await
        .assert_problem(400, "invalid-argument");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_conversations_become_leads_once_and_rejections_keep_their_reason() {
    let org = SalesforceServer::start().await;
    let stack = TestStack::start().await;
    let api = &stack.client;
    let mut tap = EventTap::subscribe(e2e::AMQP_URL, &stack.exchange).await;
    let connected = connect(api, &org, jwt_bearer(), json!({})).await;
    assert_eq!(connected.status, 200, "{}", connected.text);
    let id = connected.json["id"].as_str().unwrap().to_owned();

    let ann = ended_conversation(
        api,
        json!({"name": "Ann Lee", "email": "ann@example.com", "company": "Acme"}),
    )
    .await;
    let synced = tap.skip_until("integration.sync_completed", WAIT).await;
    assert_eq!(synced["data"]["lead"]["id"], ann.as_str());
    assert_eq!(synced["data"]["counts"]["created"], 1);
    let leads = org.leads();
    assert_eq!(leads.len(), 1);
    assert_eq!(leads[0].external_id, ann);
    assert_eq!(leads[0].fields["LastName"], "Lee");
    assert_eq!(leads[0].fields["FirstName"], "Ann");
    assert_eq!(leads[0].fields["Company"], "Acme");
    let listed = api.get(&format!("/api/v1/integrations/{id}/leads")).await;
    assert_eq!(listed.json["leads"][0]["status"], "synced", "{}", listed.text);
    assert_eq!(listed.json["leads"][0]["lead_id"], leads[0].id.as_str());

    // The session is spent: one new sign-in, one retry.
    org.expire_sessions();
    let tokens = org.token_requests();
    let bob = ended_conversation(api, json!({"email": "bob@example.com"})).await;
    let synced = tap.skip_until("integration.sync_completed", WAIT).await;
    assert_eq!(synced["data"]["lead"]["id"], bob.as_str());
    assert_eq!(org.token_requests(), tokens + 1);
    assert_eq!(org.leads().len(), 2);

    // A duplicate is refused for good, with Salesforce's reason.
    org.flag_duplicate("carol@example.com");
    let upserts = org.upserts();
    let carol = ended_conversation(api, json!({"name": "Carol", "email": "carol@example.com"})).await;
    let failed = tap.skip_until("integration.sync_failed", WAIT).await;
    assert_eq!(failed["data"]["lead"]["id"], carol.as_str());
    assert!(
        failed["data"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("DUPLICATES_DETECTED")
    );
    assert!(failed["data"]["next_retry_at"].is_null());
    // An anonymous visitor makes no lead.
    ended_conversation(api, json!({})).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(org.upserts(), upserts + 1, "a rejected lead is not retried");
    assert_eq!(org.leads().len(), 2);
    let listed = api.get(&format!("/api/v1/integrations/{id}/leads")).await;
    let statuses: Vec<&str> = listed.json["leads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["failed", "synced", "synced"]);
    stack.stop().await;
}

/// proto3 JSON leaves out `false` and empty lists.
fn cached(found: &Value) -> bool {
    found["cached"].as_bool().unwrap_or(false)
}

fn count(found: &Value, list: &str) -> usize {
    found[list].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_is_looked_up_across_pages_cached_and_never_by_injection() {
    let org = SalesforceServer::start().await;
    let redis = e2e::redis_server::RedisServer::start().await;
    let stack = TestStack::start_with(e2e::Options {
        integration_redis_url: Some(redis.url.clone()),
        ..e2e::Options::default()
    })
    .await;
    let api = &stack.client;
    let connected = connect(api, &org, client_credentials(), json!({})).await;
    assert_eq!(connected.status, 200, "{}", connected.text);
    let id = connected.json["id"].as_str().unwrap().to_owned();
    for (n, email) in [
        (1, "ann@example.com"),
        (2, "ann@example.com"),
        (3, "ann@example.com"),
        (4, "zed@example.com"),
    ] {
        org.add_contact(
            json!({"Id": format!("003xx{n}"), "FirstName": "Ann", "LastName": format!("Lee {n}"),
            "Email": email, "Account": {"Name": "Acme"}}),
        );
    }
    let lookup = |email: &str| {
        let path = format!(
            "/api/v1/integrations/{id}/customers?email={}",
            form_urlencoded::byte_serialize(email.as_bytes()).collect::<String>()
        );
        async move { api.get(&path).await }
    };

    let found = lookup("ann@example.com").await;
    assert_eq!(found.status, 200, "{}", found.text);
    let contacts = found.json["contacts"].as_array().unwrap();
    assert_eq!(contacts.len(), 3, "three contacts over two pages: {}", found.text);
    assert!(
        contacts
            .iter()
            .all(|c| c["Email"] == "ann@example.com" && c.get("attributes").is_none())
    );
    assert!(!cached(&found.json));
    let queries = org.queries().len();
    let again = lookup("ANN@example.com").await;
    assert!(cached(&again.json), "{}", again.text);
    assert_eq!(org.queries().len(), queries, "the cache answered");

    // A value that would end a spliced literal selects nothing.
    let injection = "x' OR Email != '";
    let probed = lookup(injection).await;
    assert_eq!(probed.status, 400, "not an email: {}", probed.text);
    let injection = "x@example.com' OR Email != '";
    let probed = lookup(injection).await;
    assert_eq!(probed.status, 200, "{}", probed.text);
    assert_eq!(count(&probed.json, "contacts"), 0, "{}", probed.text);
    let sent = org
        .queries()
        .into_iter()
        .rev()
        .find(|q| q.contains("FROM Contact"))
        .unwrap();
    assert!(sent.contains(r"Email = 'x@example.com\' OR Email != \''"), "{sent}");

    // A lead pushed to the org changes it: the next lookup asks Salesforce.
    ended_conversation(api, json!({"name": "Ann Lee", "email": "ann@example.com"})).await;
    api.get_until(&format!("/api/v1/integrations/{id}/leads"), WAIT, |page| {
        page["leads"][0]["status"] == "synced"
    })
    .await;
    let fresh = lookup("ann@example.com").await;
    assert!(!cached(&fresh.json), "{}", fresh.text);
    assert_eq!(count(&fresh.json, "leads"), 1, "{}", fresh.text);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leads_waiting_together_go_in_one_collection_upsert() {
    let org = SalesforceServer::start().await;
    let stack = TestStack::start().await;
    let api = &stack.client;
    let connected = connect(api, &org, client_credentials(), json!({})).await;
    assert_eq!(connected.status, 200, "{}", connected.text);
    let id = connected.json["id"].as_str().unwrap().to_owned();
    org.flag_duplicate("dup@example.com");

    // While the first lead's upsert is held, three more conversations end.
    org.hold_next_upsert(Duration::from_secs(4));
    ended_conversation(api, json!({"email": "first@example.com"})).await;
    for email in ["a@example.com", "dup@example.com", "b@example.com"] {
        ended_conversation(api, json!({"email": email})).await;
    }
    let leads = format!("/api/v1/integrations/{id}/leads");
    let listed = api
        .get_until(&leads, WAIT, |page| {
            page["leads"]
                .as_array()
                .is_some_and(|l| l.len() == 4 && l.iter().all(|l| l["status"] != "pending"))
        })
        .await;
    assert_eq!(org.collection_upserts(), 1, "the three waiting leads went in one call");
    assert_eq!(org.upserts(), 4, "each lead was pushed once");
    assert_eq!(org.leads().len(), 3);
    let failed: Vec<&Value> = listed["leads"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0]["last_error"]
            .as_str()
            .unwrap()
            .starts_with("DUPLICATES_DETECTED")
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_org_near_its_daily_api_limit_waits_for_its_window() {
    let org = SalesforceServer::start().await;
    let stack = TestStack::start().await;
    let api = &stack.client;
    let mut tap = EventTap::subscribe(e2e::AMQP_URL, &stack.exchange).await;
    let connected = connect(api, &org, client_credentials(), json!({})).await;
    assert_eq!(connected.status, 200, "{}", connected.text);
    org.set_api_usage(4_950, 5_000);
    let first = ended_conversation(api, json!({"email": "first@example.com"})).await;
    let synced = tap.skip_until("integration.sync_completed", WAIT).await;
    assert_eq!(synced["data"]["lead"]["id"], first.as_str());

    // Its answer said 4 950 of 5 000 requests are spent: the next lead waits.
    let second = ended_conversation(api, json!({"email": "second@example.com"})).await;
    let paused = tap.skip_until("integration.sync_failed", WAIT).await;
    assert_eq!(paused["data"]["lead"]["id"], second.as_str());
    assert!(
        paused["data"]["reason"].as_str().unwrap().contains("4950 of its 5000"),
        "{paused}"
    );
    let retry: chrono::DateTime<chrono::Utc> = paused["data"]["next_retry_at"].as_str().unwrap().parse().unwrap();
    assert!(retry > chrono::Utc::now() + chrono::Duration::minutes(55));
    assert_eq!(org.upserts(), 1, "the waiting lead was not sent");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leads_wait_out_an_outage_behind_the_breaker_and_none_is_lost() {
    let org = SalesforceServer::start().await;
    let stack = TestStack::start_with(e2e::Options {
        vendor_breaker_open: Some(Duration::from_secs(5)),
        ..e2e::Options::default()
    })
    .await;
    let api = &stack.client;
    let mut tap = EventTap::subscribe(e2e::AMQP_URL, &stack.exchange).await;
    let connected = connect(api, &org, jwt_bearer(), json!({})).await;
    assert_eq!(connected.status, 200, "{}", connected.text);
    let id = connected.json["id"].as_str().unwrap().to_owned();

    org.go_down(Some(503));
    let mut conversations = Vec::new();
    for n in 0..4 {
        let customer = json!({"name": format!("Visitor {n}"), "email": format!("visitor{n}@example.com")});
        conversations.push(ended_conversation(api, customer).await);
    }
    // Passing failures are announced with their retry time; five in a row
    // open the breaker, and while it is open the org is spared.
    let paused = loop {
        let failed = tap.skip_until("integration.sync_failed", WAIT).await;
        assert!(failed["data"]["next_retry_at"].is_string(), "{failed}");
        if failed["data"]["reason"].as_str().unwrap_or_default().contains("paused") {
            break failed;
        }
    };
    assert_eq!(paused["data"]["integration_id"], id.as_str());
    let calls = org.calls_while_down();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(org.calls_while_down(), calls, "an open breaker spares the org");

    org.go_down(None);
    let path = format!("/api/v1/integrations/{id}/leads");
    let listed = api
        .get_until(&path, Duration::from_secs(30), |page| {
            page["leads"]
                .as_array()
                .is_some_and(|l| l.len() == 4 && l.iter().all(|l| l["status"] == "synced"))
        })
        .await;
    assert_eq!(listed["leads"].as_array().unwrap().len(), 4);
    let mut pushed: Vec<String> = org.leads().into_iter().map(|l| l.external_id).collect();
    pushed.sort();
    conversations.sort();
    assert_eq!(pushed, conversations, "every lead arrived once");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_keywords_only_qualified_conversations_become_leads_as_soon_as_they_qualify() {
    let org = SalesforceServer::start().await;
    let stack = TestStack::start().await;
    let api = &stack.client;
    let settings = json!({"qualify_keywords": ["Quote", "bulk order"]});
    let connected = connect(api, &org, jwt_bearer(), settings).await;
    assert_eq!(connected.status, 200, "{}", connected.text);
    assert_eq!(
        connected.json["settings"]["qualify_keywords"],
        json!(["quote", "bulk order"])
    );
    let id = connected.json["id"].as_str().unwrap().to_owned();
    let leads = format!("/api/v1/integrations/{id}/leads");

    let open = |customer: Value| async move {
        let created = api
            .post(
                "/api/v1/conversations",
                json!({"user_id": "visitor", "channel": "web", "metadata": {"customer": customer}}),
            )
            .await;
        assert_eq!(created.status, 200, "{}", created.text);
        created.json["id"].as_str().unwrap().to_owned()
    };
    let ann = open(json!({"name": "Ann Lee", "email": "ann@example.com"})).await;
    api.send_message(&ann, "Hello there").await;
    api.send_message(&ann, "Could I get a QUOTE for 200 mugs?").await;
    // Qualified while it is still going on.
    let listed = api
        .get_until(&leads, WAIT, |page| page["leads"][0]["status"] == "synced")
        .await;
    assert_eq!(listed["leads"][0]["conversation_id"], ann.as_str());
    let pushed = org.leads();
    assert_eq!(pushed.len(), 1);
    let description = pushed[0].fields["Description"].as_str().unwrap().to_owned();
    assert!(
        description.contains("qualified when the visitor wrote \"quote\""),
        "{description}"
    );

    // A conversation that never qualifies makes no lead, even once ended.
    let bob = open(json!({"name": "Bob Roe", "email": "bob@example.com"})).await;
    api.send_message(&bob, "What are your opening hours?").await;
    api.send_message(&ann, "Thanks, that's all").await;
    for conversation in [&bob, &ann] {
        let ended = api
            .request(reqwest::Method::PATCH, &format!("/api/v1/conversations/{conversation}"))
            .json(&json!({"status": "ended"}));
        assert_eq!(Client::send(ended).await.status, 200);
    }
    // Qualifying and ending at once: the lead still ends with the summary.
    let carol = ended_conversation(api, json!({"name": "Carol Poe", "email": "carol@example.com"})).await;
    // Ann's lead is updated in place with the final summary.
    let summarised = |conversation: &str| {
        org.leads()
            .iter()
            .any(|l| l.external_id == conversation && l.fields["Description"].as_str().unwrap().contains("ended"))
    };
    let started = std::time::Instant::now();
    while !(summarised(&ann) && summarised(&carol)) {
        assert!(
            started.elapsed() < WAIT,
            "the ended conversation's summary never reached the lead: {:?}",
            org.leads()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut pushed: Vec<String> = org.leads().into_iter().map(|l| l.external_id).collect();
    pushed.sort();
    let mut expected = vec![ann, carol];
    expected.sort();
    assert_eq!(
        pushed, expected,
        "one lead each for Ann and Carol, none for Bob ({bob})"
    );
    stack.stop().await;
}
