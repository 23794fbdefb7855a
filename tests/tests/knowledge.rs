//! Bots that answer from their knowledge: knowledge items through REST,
//! training jobs, deployment and rollback, replies with citations and
//! confidence, handoff below the threshold, isolation, and the retrieval
//! quality of the built-in engine on a realistic FAQ.

use std::time::Duration;

use e2e::{
    TestStack,
    bots::{add_faqs, add_items, ask, conversation_with, create_bot, deploy, train, train_and_deploy},
    event_tap::EventTap,
};
use serde_json::{Value, json};

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(q, a)| ((*q).to_owned(), (*a).to_owned())).collect()
}

/// A conversation with a trained, deployed bot that knows [`SHOP`].
async fn shop_conversation(api: &e2e::Client) -> String {
    let bot = create_bot(api, "Support", json!({})).await;
    add_faqs(api, &bot, &pairs(SHOP)).await;
    train_and_deploy(api, &bot).await;
    conversation_with(api, &bot).await
}

const SHOP: &[(&str, &str)] = &[
    (
        "How long does shipping take?",
        "Standard shipping takes 3 to 5 business days.",
    ),
    (
        "What is your return policy?",
        "You can return unused items within 30 days for a full refund.",
    ),
    (
        "How do I reset my password?",
        "Choose Forgot password on the sign-in page; the link is valid for one hour.",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knowledge_items_are_added_listed_updated_and_removed() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    let bot = create_bot(api, "Support", json!({})).await;
    let base = format!("/api/v1/bots/{bot}/knowledge");

    let faq = api
        .post(
            &base,
            json!({"faq": {"question": "Do you ship abroad?", "answer": "Yes, to 40 countries."}}),
        )
        .await;
    assert_eq!(faq.status, 200, "{}", faq.text);
    let faq_id = faq.json["id"].as_str().unwrap().to_owned();
    assert!(faq_id.starts_with("kn_"));
    assert_eq!(faq.json["faq"]["answer"], "Yes, to 40 countries.");
    let doc = api
        .post(
            &base,
            json!({"document": {"title": "Returns", "text": "Returns are free within 30 days.",
                   "source_url": "https://shop.example.com/returns", "metadata": {"lang": "en"}}}),
        )
        .await;
    assert_eq!(doc.status, 200, "{}", doc.text);
    assert_eq!(doc.json["document"]["source_url"], "https://shop.example.com/returns");
    assert_eq!(doc.json["document"]["metadata"]["lang"], "en");
    let doc_id = doc.json["id"].as_str().unwrap().to_owned();

    let listed = api.get(&format!("{base}?limit=1")).await;
    assert_eq!(listed.json["items"][0]["id"], doc_id.as_str(), "newest first");
    let next = listed.json["next_cursor"].as_str().unwrap();
    let second = api.get(&format!("{base}?limit=1&cursor={next}")).await;
    assert_eq!(second.json["items"][0]["id"], faq_id.as_str());

    let updated = api
        .put(
            &format!("{base}/{faq_id}"),
            json!({"faq": {"question": "Do you ship abroad?", "answer": "Yes, to 45 countries."}}),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.text);
    assert_eq!(
        api.get(&format!("{base}/{faq_id}")).await.json["faq"]["answer"],
        "Yes, to 45 countries."
    );

    assert_eq!(api.delete(&format!("{base}/{doc_id}")).await.status, 200);
    api.get(&format!("{base}/{doc_id}"))
        .await
        .assert_problem(404, "not-found");
    api.delete(&format!("{base}/{doc_id}"))
        .await
        .assert_problem(404, "not-found");

    // Bad input names the field, in batches too; nothing is half-added.
    let reply = api.post(&base, json!({"faq": {"question": "", "answer": "a"}})).await;
    reply.assert_problem(400, "invalid-argument");
    assert_eq!(reply.json["field"], "faq.question");
    let reply = api.post(&base, json!({})).await;
    reply.assert_problem(400, "invalid-argument");
    let reply = api
        .post(
            &format!("{base}:batchCreate"),
            json!({"items": [{"faq": {"question": "q", "answer": "a"}}, {"faq": {"question": "q2"}}]}),
        )
        .await;
    reply.assert_problem(400, "invalid-argument");
    assert_eq!(reply.json["field"], "items[1].faq.answer");
    let reply = api
        .post(
            &base,
            json!({"document": {"text": "t", "source_url": "javascript:alert(1)"}}),
        )
        .await;
    assert_eq!(reply.json["field"], "document.source_url");
    assert_eq!(api.get(&base).await.json["items"].as_array().unwrap().len(), 1);

    // Another workspace sees none of it.
    let other = stack.new_workspace("other").await;
    other.get(&base).await.assert_problem(404, "not-found");
    other
        .get(&format!("{base}/{faq_id}"))
        .await
        .assert_problem(404, "not-found");
    other
        .post(&base, json!({"faq": {"question": "q", "answer": "a"}}))
        .await
        .assert_problem(404, "not-found");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_runs_in_the_background_and_deploy_makes_a_version_live() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    let mut tap = EventTap::subscribe(e2e::AMQP_URL, &stack.exchange).await;
    let bot = create_bot(api, "Support", json!({})).await;

    // Nothing to train on: the job fails with the reason, and says so.
    let failed = train(api, &bot).await;
    assert_eq!(failed["status"], "failed");
    assert!(failed["error"].as_str().unwrap().contains("no knowledge"), "{failed}");
    let event = &tap.take(1, Duration::from_secs(10)).await[0];
    assert_eq!(event["event"], "bot.error");
    assert_eq!(event["data"]["bot_id"], bot.as_str());
    deploy(api, &bot, 1).await.assert_problem(400, "failed-precondition");
    deploy(api, &bot, 0).await.assert_problem(400, "failed-precondition");

    let long_document = "Our warehouse ships every weekday. ".repeat(200);
    add_faqs(api, &bot, &pairs(SHOP)).await;
    add_items(
        api,
        &bot,
        vec![json!({"document": {"title": "Warehouse", "text": long_document}})],
    )
    .await;
    let job = train(api, &bot).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["version"], 2);
    let passages: i64 = job["passages_indexed"].as_str().unwrap().parse().unwrap();
    assert!(passages > 4, "the long document is split into passages: {job}");
    assert_eq!(job["passages_total"], job["passages_indexed"]);
    assert!(job["started_at"].is_string() && job["finished_at"].is_string());
    let event = &tap.take(1, Duration::from_secs(10)).await[0];
    assert_eq!(event["event"], "bot.trained");
    assert_eq!(event["data"]["version"], 2);

    let jobs = api.get(&format!("/api/v1/bots/{bot}/training-jobs")).await;
    let versions: Vec<&Value> = jobs.json["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| &j["version"])
        .collect();
    assert_eq!(versions, [&json!(2), &json!(1)]);

    let deployed = deploy(api, &bot, 0).await;
    assert_eq!(deployed.status, 200, "{}", deployed.text);
    assert_eq!(deployed.json["deployed_version"], 2);
    let event = &tap.take(1, Duration::from_secs(10)).await[0];
    assert_eq!(event["event"], "bot.deployed");
    assert_eq!(event["data"]["version"], 2);
    assert_eq!(event["data"]["previous_version"], 0);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_answers_from_knowledge_and_hands_off_when_unsure() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    let bot = create_bot(api, "Support", json!({"fallback_message": "Let me get a colleague."})).await;
    let ids = add_faqs(api, &bot, &pairs(SHOP)).await;
    train_and_deploy(api, &bot).await;
    let mut tap = EventTap::subscribe(e2e::AMQP_URL, &stack.exchange).await;

    let conv = conversation_with(api, &bot).await;
    // Training's and deployment's events may still be on their way.
    tap.skip_until("conversation.started", Duration::from_secs(10)).await;
    let sent = ask(api, &conv, "how many days does shipping take?").await;
    let reply = &sent.json["reply"];
    assert_eq!(reply["role"], "bot");
    assert_eq!(reply["content"], SHOP[0].1);
    assert_eq!(reply["metadata"]["citations"], json!([ids[0]]));
    assert!(reply["metadata"]["confidence"].as_f64().unwrap() >= 0.35);
    assert_eq!(reply["metadata"]["in_reply_to"], sent.json["message"]["id"]);
    assert_eq!(reply["sequence"], "2");
    let events = tap.take(2, Duration::from_secs(10)).await;
    assert_eq!(events[0]["event"], "message.received");
    assert_eq!(events[1]["event"], "message.sent");
    assert_eq!(events[1]["data"]["message"]["content"], SHOP[0].1);

    // A question the bot was never taught: the fallback, and a human.
    let sent = ask(api, &conv, "Which team won the football world cup in 1998?").await;
    let reply = &sent.json["reply"];
    assert_eq!(reply["content"], "Let me get a colleague.");
    assert_eq!(reply["metadata"]["handoff"]["reason"], "low_confidence");
    let conversation = api.get(&format!("/api/v1/conversations/{conv}")).await;
    assert_eq!(conversation.json["status"], "waiting");
    assert_eq!(conversation.json["metadata"]["handoff"]["reason"], "low_confidence");
    let events = tap.take(3, Duration::from_secs(10)).await;
    let kinds: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["message.received", "message.sent", "conversation.updated"]);
    let changes = events[2]["data"]["changes"].as_array().unwrap();
    assert!(changes.contains(&json!({"field": "status", "old_value": "active", "new_value": "waiting"})));

    // While a human has it, the bot stays quiet.
    let sent = ask(api, &conv, "how long does shipping take?").await;
    assert!(sent.json.get("reply").is_none_or(Value::is_null), "{}", sent.text);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_change_only_after_train_and_deploy_and_rollback_restores_them() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    let bot = create_bot(api, "Support", json!({})).await;
    let ids = add_faqs(api, &bot, &pairs(SHOP)).await;
    let first = train_and_deploy(api, &bot).await;
    let question = "how long does shipping take?";
    let answer = |sent: e2e::Reply| sent.json["reply"]["content"].as_str().unwrap().to_owned();

    let faq = format!("/api/v1/bots/{bot}/knowledge/{}", ids[0]);
    let edited = api
        .put(
            &faq,
            json!({"faq": {"question": "How long does shipping take?", "answer": "Shipping takes 1 day."}}),
        )
        .await;
    assert_eq!(edited.status, 200);
    let conv = conversation_with(api, &bot).await;
    assert_eq!(
        answer(ask(api, &conv, question).await),
        SHOP[0].1,
        "edits wait for training"
    );
    let job = train(api, &bot).await;
    assert_eq!(job["status"], "succeeded");
    assert_eq!(answer(ask(api, &conv, question).await), SHOP[0].1, "and for deployment");
    let second = deploy(api, &bot, 0).await.json["deployed_version"].as_i64().unwrap();
    assert!(second > first);
    assert_eq!(answer(ask(api, &conv, question).await), "Shipping takes 1 day.");

    let rolled_back = deploy(api, &bot, first).await;
    assert_eq!(rolled_back.json["deployed_version"], first);
    assert_eq!(
        answer(ask(api, &conv, question).await),
        SHOP[0].1,
        "rollback restores the old answer"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrain_keeps_unchanged_questions_meaning_and_learns_the_edited_one() {
    e2e::require_embedding_model();
    let stack = TestStack::start().await;
    let api = &stack.client;
    let bot = create_bot(api, "Support", json!({})).await;
    let ids = add_faqs(api, &bot, &pairs(SHOP)).await;
    train_and_deploy(api, &bot).await;
    // Paraphrases sharing no content word with the stored questions: only
    // the vectors find them.
    let unchanged = "I forgot my login credentials, how can I get back in?";
    let best = |sent: e2e::Reply| sent.json["reply"]["metadata"]["candidates"][0].clone();
    let conv = conversation_with(api, &bot).await;
    let before = best(ask(api, &conv, unchanged).await);
    assert_eq!(before["item_id"], ids[2].as_str(), "{before}");

    let edited = api
        .put(
            &format!("/api/v1/bots/{bot}/knowledge/{}", ids[0]),
            json!({"faq": {"question": "Do you sell gift cards?", "answer": "Yes, from 10 to 500 dollars."}}),
        )
        .await;
    assert_eq!(edited.status, 200, "{}", edited.text);
    train_and_deploy(api, &bot).await;
    let conv = conversation_with(api, &bot).await;
    let after = best(ask(api, &conv, unchanged).await);
    assert_eq!(after["item_id"], ids[2].as_str(), "{after}");
    assert_eq!(
        after["similarity"], before["similarity"],
        "the unchanged question kept its vector"
    );
    let voucher = best(ask(api, &conv, "Can I purchase a present card for a friend?").await);
    assert_eq!(
        voucher["item_id"],
        ids[0].as_str(),
        "the edited question has its own vector: {voucher}"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_never_answers_from_another_bots_or_workspaces_knowledge() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    let secret = "The staff discount code is STAFF-4242.";
    let insider = create_bot(api, "Internal", json!({})).await;
    add_faqs(api, &insider, &pairs(&[("What is the staff discount code?", secret)])).await;
    train_and_deploy(api, &insider).await;

    let public = create_bot(api, "Public", json!({})).await;
    add_faqs(api, &public, &pairs(SHOP)).await;
    train_and_deploy(api, &public).await;
    let other = stack.new_workspace("other").await;
    let foreign = create_bot(&other, "Foreign", json!({})).await;
    add_faqs(&other, &foreign, &pairs(SHOP)).await;
    train_and_deploy(&other, &foreign).await;

    for (client, bot) in [(api, &public), (&other, &foreign)] {
        let conv = conversation_with(client, bot).await;
        let sent = ask(client, &conv, "What is the staff discount code?").await;
        let reply = &sent.json["reply"];
        assert_ne!(reply["content"], secret);
        assert!(!sent.text.contains("STAFF-4242"), "{}", sent.text);
        assert_eq!(reply["metadata"]["handoff"]["reason"], "low_confidence");
    }
    stack.stop().await;
}

#[derive(serde::Deserialize)]
struct Fixture {
    pairs: Vec<FixturePair>,
    unrelated: Vec<String>,
}

#[derive(serde::Deserialize)]
struct FixturePair {
    q: String,
    a: String,
    p: String,
}

/// The built-in engine on 105 support FAQs, asked each in other words, and
/// 30 questions about unrelated topics. Prints the figures it asserts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrieval_quality_on_a_realistic_support_faq() {
    let fixture: Fixture =
        serde_json::from_str(include_str!("../fixtures/faq_retail.json")).expect("the fixture parses");
    assert!(fixture.pairs.len() >= 100);
    e2e::require_embedding_model();
    let stack = TestStack::start().await;
    let api = &stack.client;
    let bot = create_bot(api, "Support", json!({})).await;
    let list: Vec<(String, String)> = fixture.pairs.iter().map(|p| (p.q.clone(), p.a.clone())).collect();
    let ids = add_faqs(api, &bot, &list).await;
    train_and_deploy(api, &bot).await;

    let mut top1 = 0;
    let mut answered = 0;
    for (pair, id) in fixture.pairs.iter().zip(&ids) {
        let conv = conversation_with(api, &bot).await;
        let reply = ask(api, &conv, &pair.p).await.json["reply"].clone();
        let best = reply["metadata"]["candidates"][0]["item_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        top1 += usize::from(best == *id);
        answered += usize::from(reply["content"] == pair.a.as_str());
    }
    let mut handed_off = 0;
    for question in &fixture.unrelated {
        let conv = conversation_with(api, &bot).await;
        let reply = ask(api, &conv, question).await.json["reply"].clone();
        handed_off += usize::from(reply["metadata"]["handoff"]["reason"] == "low_confidence");
    }
    let n = fixture.pairs.len() as f64;
    let top1_rate = top1 as f64 / n;
    let answered_rate = answered as f64 / n;
    let handoff_rate = handed_off as f64 / fixture.unrelated.len() as f64;
    println!(
        "retrieval: top-1 {top1}/{} ({:.0}%), answered correctly above the threshold {answered} ({:.0}%), \
         unrelated handed off {handed_off}/{} ({:.0}%)",
        fixture.pairs.len(),
        top1_rate * 100.0,
        answered_rate * 100.0,
        fixture.unrelated.len(),
        handoff_rate * 100.0
    );
    // The target: at least 90% top-1, from BM25 mixed with the better of
    // the question's and the question-with-answer's vector similarity. The
    // figures this prints are in the README, beside this command.
    assert!(top1_rate >= 0.9, "top-1 accuracy fell to {top1_rate:.2}");
    assert!(
        answered_rate >= 0.85,
        "correct answers above the threshold fell to {answered_rate:.2}"
    );
    assert!(
        handoff_rate >= 0.9,
        "unrelated questions handed off only {handoff_rate:.2}"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_send_returns_the_same_reply_and_the_bot_answers_once() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    let conv = shop_conversation(api).await;
    let path = format!("/api/v1/conversations/{conv}/messages");
    let send = || async {
        let reply = e2e::Client::send(
            api.request(reqwest::Method::POST, &path)
                .header("idempotency-key", "retry-7")
                .json(&json!({"role": "user", "content": "what is your return policy?"})),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply
    };
    let (first, second) = tokio::join!(send(), send());
    let third = send().await;
    for retry in [&second, &third] {
        assert_eq!(retry.json["reply"]["id"], first.json["reply"]["id"]);
        assert_eq!(retry.json["message"]["id"], first.json["message"]["id"]);
    }
    assert_eq!(first.json["reply"]["content"], SHOP[1].1);
    let stored = api.get(&path).await;
    assert_eq!(
        stored.json["messages"].as_array().unwrap().len(),
        2,
        "one question, one answer"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knowledge_replies_stream_as_server_sent_events_too() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    let conv = shop_conversation(api).await;
    let body = api
        .request(reqwest::Method::POST, &format!("/api/v1/conversations/{conv}/messages"))
        .header("accept", "text/event-stream")
        .json(&json!({"role": "user", "content": "how long does shipping take?"}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events: Vec<(&str, Value)> = body
        .split("\n\n")
        .filter_map(|block| {
            let name = block.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data = block.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((name, serde_json::from_str(data).unwrap()))
        })
        .collect();
    let deltas: String = events
        .iter()
        .filter(|(n, _)| *n == "delta")
        .map(|(_, d)| d["text"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, SHOP[0].1);
    assert_eq!(events.first().unwrap().0, "message");
    let (last, reply) = events.last().unwrap();
    assert_eq!(*last, "reply");
    assert_eq!(reply["content"], SHOP[0].1);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_training_job_whose_worker_died_is_taken_up_again() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    let bot = create_bot(api, "Support", json!({})).await;
    add_faqs(api, &bot, &pairs(SHOP)).await;
    // What a replica that crashed mid-job leaves behind: a running job whose
    // lease has lapsed.
    let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(stack.database_url())
        .await
        .expect("the stack's database");
    sqlx::query("UPDATE chatbot.bots SET latest_version = 1 WHERE id = $1")
        .bind(&bot)
        .execute(&mut db)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO chatbot.training_jobs
             (workspace_id, id, bot_id, status, version, attempts, started_at, lease_until)
         VALUES ($1, 'job_abandoned1', $2, 'running', 1, 1, now() - interval '1 minute', now() - interval '1 second')",
    )
    .bind(&stack.workspace_id)
    .bind(&bot)
    .execute(&mut db)
    .await
    .unwrap();
    let job = e2e::bots::wait_for_job(api, &bot, "job_abandoned1", Duration::from_secs(20)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["passages_indexed"], "3");
    assert_eq!(deploy(api, &bot, 1).await.json["deployed_version"], 1);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_with_a_greeting_opens_the_conversation_with_it() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    let mut tap = EventTap::subscribe(e2e::AMQP_URL, &stack.exchange).await;
    let bot = create_bot(
        api,
        "Support",
        json!({"greeting": "Hi! Ask me about orders, shipping or returns."}),
    )
    .await;
    let conv = api
        .post(
            "/api/v1/conversations",
            json!({"user_id": "customer-1", "channel": "web", "bot_id": bot}),
        )
        .await;
    assert_eq!(conv.json["message_count"], "1", "{}", conv.text);
    let id = conv.json["id"].as_str().unwrap();
    let messages = api.get(&format!("/api/v1/conversations/{id}/messages")).await;
    let first = &messages.json["messages"][0];
    assert_eq!(first["role"], "bot");
    assert_eq!(first["content"], "Hi! Ask me about orders, shipping or returns.");
    assert_eq!(first["sequence"], "1");
    let events = tap.take(2, Duration::from_secs(10)).await;
    let kinds: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["conversation.started", "message.sent"]);

    // Without a greeting nothing is said first.
    let quiet = create_bot(api, "Quiet", json!({})).await;
    let conv = api
        .post(
            "/api/v1/conversations",
            json!({"user_id": "c2", "channel": "web", "bot_id": quiet}),
        )
        .await;
    assert_eq!(conv.json["message_count"], "0");
    stack.stop().await;
}
