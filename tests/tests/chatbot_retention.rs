//! chatbot-service forgets what is older than its retention: finished
//! training jobs (never the deployed version's or the latest) and
//! messages' idempotency keys (never the messages), and keeps what is
//! recent.

use std::time::Duration;

use e2e::{
    TestStack,
    bots::{add_faqs, create_bot, deploy, train},
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_training_jobs_and_idempotency_keys_go_and_recent_ones_stay() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    let bot = create_bot(api, "kept", json!({})).await;
    add_faqs(api, &bot, &[("When do you open?".into(), "At nine.".into())]).await;
    let mut jobs = Vec::new();
    for _ in 0..3 {
        let job = train(api, &bot).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        jobs.push(job["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(deploy(api, &bot, 1).await.status, 200);
    let conv = api.create_conversation("u").await;
    let old = api.send_with_key(&conv, "old-key", "first").await;
    let recent = api.send_with_key(&conv, "recent-key", "second").await;
    assert_eq!((old.status, recent.status), (200, 200));

    let options: sqlx::postgres::PgConnectOptions = stack.database_url().parse().unwrap();
    let pool = sqlx::PgPool::connect_with(options.options([("search_path", chatbot_service::SCHEMA)]))
        .await
        .unwrap();
    // Forty days pass for every job and for the first message.
    sqlx::query(
        "UPDATE training_jobs SET created_at = now() - interval '40 days', finished_at = now() - interval '40 days'",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("UPDATE messages SET created_at = now() - interval '40 days' WHERE id = $1")
        .bind(old.json["message"]["id"].as_str().unwrap())
        .execute(&pool)
        .await
        .unwrap();
    let thirty_days = Duration::from_secs(30 * 86_400);
    let removed = chatbot_service::retention::prune(&pool, thirty_days, &Default::default())
        .await
        .unwrap();
    assert_eq!(
        removed,
        chatbot_service::retention::Removed {
            training_jobs: 1,
            idempotency_keys: 1
        }
    );

    // Version 1 is deployed and version 3 the latest: only version 2 goes.
    let job = |id: &str| format!("/api/v1/bots/{bot}/training-jobs/{id}");
    assert_eq!(api.get(&job(&jobs[0])).await.status, 200);
    api.get(&job(&jobs[1])).await.assert_problem(404, "not-found");
    assert_eq!(api.get(&job(&jobs[2])).await.status, 200);

    // A retry that late is a new send; a recent one still replays.
    let late = api.send_with_key(&conv, "old-key", "first").await;
    assert_eq!(late.json["replayed"], false, "{}", late.text);
    assert_ne!(late.json["message"]["id"], old.json["message"]["id"]);
    let retried = api.send_with_key(&conv, "recent-key", "second").await;
    assert_eq!(retried.json["replayed"], true, "{}", retried.text);
    assert_eq!(retried.json["message"]["id"], recent.json["message"]["id"]);
    let messages = api.get(&format!("/api/v1/conversations/{conv}/messages")).await;
    let contents: Vec<_> = messages.json["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].clone())
        .collect();
    assert_eq!(contents, ["first", "second", "first"], "the old message itself stays");

    let again = chatbot_service::retention::prune(&pool, thirty_days, &Default::default())
        .await
        .unwrap();
    assert_eq!(again, Default::default(), "nothing recent goes");
    pool.close().await;
    stack.stop().await;
}
