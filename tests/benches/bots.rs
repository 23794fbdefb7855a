//! Bot benchmark, in one run: for bots with 100, 10 000 and 100 000
//! passages, the training throughput (passages per second, from `POST
//! /train` to the job's success) and the p50 / p99 latency of a message
//! round trip with the `knowledge` engine (a user message sent through the
//! gateway, the reply drafted, stored and returned).
//!
//!     cargo bench -p e2e --bench bots
//!
//! Everything (PostgreSQL, RabbitMQ, the services, the client) shares this
//! machine. The corpus is synthetic: documents of Zipf-distributed words
//! from a 20 000-word vocabulary, each split into passages by training;
//! questions take five words of a random passage. `BENCH_QUESTIONS`
//! (default 300 per size) tunes the latency run.
//!
//! A second table does the same for bots of 100 and 1 000 FAQ pairs
//! (`BENCH_FAQ_SIZES`), each of which training embeds twice with the
//! sentence model (the question, and the question with its answer) and
//! whose replies embed the user's question: English questions of 6 to 12
//! words drawn from a support vocabulary. A third table times retraining
//! each FAQ bot after one pair is edited.

use std::time::{Duration, Instant};

use e2e::{
    Options, TestStack,
    bench_clock::{CpuTime, print_machine},
    bots::{add_faqs, add_items, conversation_with, create_bot, deploy, train_within},
};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};

const VOCABULARY: usize = 20_000;
const SENTENCE_WORDS: usize = 12;
/// Sentences per passage: about 500 characters, under the 700 limit.
const PASSAGE_SENTENCES: usize = 4;
const PASSAGES_PER_DOCUMENT: usize = 10;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let questions = env("BENCH_QUESTIONS", 300) as usize;
    print_machine("bot");
    println!("everything on this machine\n");
    println!(
        "{:>9} {:>12} {:>14} {:>10} {:>10} {:>10}",
        "passages", "train (s)", "passages/s", "p50 (ms)", "p99 (ms)", "questions"
    );
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 10_000, 100_000]);
    for passages in sizes {
        print_row(&run(passages, questions).await);
    }
    e2e::require_embedding_model();
    println!("\nFAQ bots (questions and answers embedded with the sentence model)\n");
    println!(
        "{:>9} {:>12} {:>14} {:>10} {:>10} {:>10}",
        "FAQs", "train (s)", "FAQs/s", "p50 (ms)", "p99 (ms)", "questions"
    );
    let faq_sizes: Vec<usize> = std::env::var("BENCH_FAQ_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 1_000]);
    let mut retrains = Vec::new();
    for faqs in faq_sizes {
        let (row, retrain_seconds) = run_faqs(faqs, questions).await;
        print_row(&row);
        retrains.push((faqs, retrain_seconds));
    }
    println!("\nretraining after one FAQ is edited (the others keep their vectors)\n");
    println!("{:>9} {:>12}", "FAQs", "train (s)");
    for (faqs, seconds) in retrains {
        println!("{faqs:>9} {seconds:>12.2}");
    }
}

fn print_row(row: &Row) {
    println!(
        "{:>9} {:>12.2} {:>14.0} {:>10.2} {:>10.2} {:>10}",
        row.passages,
        row.train_seconds,
        row.passages as f64 / row.train_seconds,
        row.p50,
        row.p99,
        row.answered
    );
    println!("{:>9} CPU per item trained: {}", "", row.train_cpu);
    println!("{:>9} CPU per question answered: {}", "", row.answer_cpu);
}

struct Row {
    passages: usize,
    train_seconds: f64,
    p50: f64,
    p99: f64,
    answered: usize,
    train_cpu: String,
    answer_cpu: String,
}

async fn run(passages: usize, questions: usize) -> Row {
    let stack = bench_stack().await;
    let api = &stack.client;
    let bot = create_bot(api, "Bench", json!({"handoff_threshold": 0.01})).await;
    let mut rng = StdRng::seed_from_u64(passages as u64);
    let words: Vec<String> = (0..VOCABULARY).map(|i| pseudo_word(i, &mut rng)).collect();
    let zipf = Zipf::new(VOCABULARY);
    let mut samples = Vec::new();
    let documents = passages.div_ceil(PASSAGES_PER_DOCUMENT);
    let per_document = passages.min(PASSAGES_PER_DOCUMENT);
    for batch in (0..documents).collect::<Vec<_>>().chunks(200) {
        let mut items = Vec::with_capacity(batch.len());
        for _ in batch {
            let mut text = String::new();
            for _ in 0..per_document {
                let passage = paragraph(&words, &zipf, &mut rng);
                if samples.len() < 10_000 {
                    samples.push(passage.clone());
                }
                text.push_str(&passage);
                text.push_str("\n\n");
            }
            items.push(json!({"document": {"title": "", "text": text}}));
        }
        add_items(api, &bot, items).await;
    }
    let before = CpuTime::now();
    let (train_seconds, job) = train_and_deploy_timed(api, &bot).await;
    let train_cpu = CpuTime::now().per_unit_since(&before, passages);
    let indexed: usize = job["passages_indexed"].as_str().unwrap().parse().unwrap();
    assert_eq!(indexed, passages, "the corpus splits as planned: {job}");

    if passages == 100 {
        baseline(api, questions).await;
    }
    let before = CpuTime::now();
    let (p50, p99, answered) = round_trips(api, &bot, questions, || {
        let passage = &samples[rng.gen_range(0..samples.len())];
        question_from(passage, &mut rng)
    })
    .await;
    let answer_cpu = CpuTime::now().per_unit_since(&before, answered + WARM_UP_QUESTIONS);
    stack.stop().await;
    Row {
        passages,
        train_seconds,
        p50,
        p99,
        answered,
        train_cpu,
        answer_cpu,
    }
}

/// A stack as production runs it (10 database connections per service),
/// taking large knowledge batches.
async fn bench_stack() -> TestStack {
    TestStack::start_with(Options {
        max_body_bytes: Some(16 * 1024 * 1024),
        db_connections: Some(10),
        ..Options::default()
    })
    .await
}

/// Trains the bot and deploys the version: the seconds from `POST /train`
/// to the job's success, and the job.
async fn train_and_deploy_timed(api: &e2e::Client, bot: &str) -> (f64, Value) {
    let started = Instant::now();
    // Embedding FAQs is CPU-bound and slow; the deadline only catches a
    // training that never ends.
    let job = train_within(api, bot, Duration::from_secs(3600)).await;
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(deploy(api, bot, 0).await.status, 200);
    (seconds, job)
}

/// A bot of `faqs` synthetic FAQ pairs, trained and asked; then one pair is
/// edited and the bot retrained: the row, and the retrain's seconds.
async fn run_faqs(faqs: usize, questions: usize) -> (Row, f64) {
    let stack = bench_stack().await;
    let api = &stack.client;
    let bot = create_bot(api, "Bench FAQ", json!({"handoff_threshold": 0.01})).await;
    let mut rng = StdRng::seed_from_u64(faqs as u64);
    let pairs: Vec<(String, String)> = (0..faqs)
        .map(|_| (support_sentence(&mut rng), support_sentence(&mut rng)))
        .collect();
    let ids = add_faqs(api, &bot, &pairs).await;
    let before = CpuTime::now();
    let (train_seconds, _) = train_and_deploy_timed(api, &bot).await;
    let train_cpu = CpuTime::now().per_unit_since(&before, faqs);
    let before = CpuTime::now();
    let (p50, p99, answered) = round_trips(api, &bot, questions, || support_sentence(&mut rng)).await;
    let answer_cpu = CpuTime::now().per_unit_since(&before, answered + WARM_UP_QUESTIONS);
    let edit = json!({"faq": {"question": support_sentence(&mut rng), "answer": support_sentence(&mut rng)}});
    let edited = api.put(&format!("/api/v1/bots/{bot}/knowledge/{}", ids[0]), edit).await;
    assert_eq!(edited.status, 200, "{}", edited.text);
    let (retrain_seconds, _) = train_and_deploy_timed(api, &bot).await;
    stack.stop().await;
    let row = Row {
        passages: faqs,
        train_seconds,
        p50,
        p99,
        answered,
        train_cpu,
        answer_cpu,
    };
    (row, retrain_seconds)
}

/// Sends before the timed ones, so caches and pools are warm.
const WARM_UP_QUESTIONS: usize = 20;

/// p50 and p99 (ms) of sends after the warm-up ones, and how many counted.
async fn round_trips(
    api: &e2e::Client,
    bot: &str,
    questions: usize,
    mut next_question: impl FnMut() -> String,
) -> (f64, f64, usize) {
    let conv = conversation_with(api, bot).await;
    let path = format!("/api/v1/conversations/{conv}/messages");
    let mut latencies = Vec::with_capacity(questions);
    for n in 0..questions + WARM_UP_QUESTIONS {
        let question = next_question();
        let started = Instant::now();
        let sent = api.post(&path, json!({"role": "user", "content": question})).await;
        let elapsed = started.elapsed();
        assert_eq!(sent.status, 200, "{}", sent.text);
        assert!(
            reply_of(&sent.json).is_some(),
            "every question gets a reply: {}",
            sent.text
        );
        if n >= WARM_UP_QUESTIONS {
            latencies.push(elapsed);
        }
    }
    latencies.sort();
    let at = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    (ms(at(0.50)), ms(at(0.99)), latencies.len())
}

/// A question-like sentence of 6 to 12 words a shopper might use.
fn support_sentence(rng: &mut StdRng) -> String {
    const WORDS: &[&str] = &[
        "how",
        "can",
        "I",
        "my",
        "order",
        "return",
        "refund",
        "package",
        "delivery",
        "shipping",
        "card",
        "account",
        "password",
        "change",
        "cancel",
        "track",
        "where",
        "when",
        "is",
        "the",
        "a",
        "gift",
        "voucher",
        "size",
        "colour",
        "store",
        "pickup",
        "express",
        "free",
        "charge",
        "invoice",
        "address",
        "email",
        "discount",
        "code",
        "broken",
        "missing",
        "late",
        "item",
        "exchange",
        "warranty",
        "price",
        "subscription",
        "pay",
        "later",
        "country",
        "customs",
        "label",
        "box",
        "today",
        "tomorrow",
        "week",
    ];
    let length = rng.gen_range(6..=12);
    let words: Vec<&str> = (0..length).map(|_| WORDS[rng.gen_range(0..WORDS.len())]).collect();
    format!("{}?", words.join(" "))
}

/// The same send to a conversation without a bot: what storing a message
/// costs before any reply.
async fn baseline(api: &e2e::Client, questions: usize) {
    let conv = api.create_conversation("baseline").await;
    let path = format!("/api/v1/conversations/{conv}/messages");
    let mut latencies = Vec::with_capacity(questions);
    for _ in 0..questions {
        let started = Instant::now();
        let sent = api.post(&path, json!({"role": "user", "content": "hello"})).await;
        latencies.push(started.elapsed());
        assert_eq!(sent.status, 200, "{}", sent.text);
    }
    latencies.sort();
    let at = |p: f64| ms(latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)]);
    println!(
        "  (baseline: a send with no bot, p50 {:.2} ms, p99 {:.2} ms)",
        at(0.5),
        at(0.99)
    );
}

fn reply_of(json: &Value) -> Option<&Value> {
    json.get("reply").filter(|r| r.is_object())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn pseudo_word(i: usize, rng: &mut StdRng) -> String {
    const SYLLABLES: &[&str] = &[
        "ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "de", "po", "qua", "zen", "bri", "shi",
    ];
    let mut word = String::new();
    for _ in 0..rng.gen_range(2..4) {
        word.push_str(SYLLABLES[rng.gen_range(0..SYLLABLES.len())]);
    }
    word.push_str(&i.to_string());
    word
}

fn paragraph(words: &[String], zipf: &Zipf, rng: &mut StdRng) -> String {
    let mut text = String::new();
    for _ in 0..PASSAGE_SENTENCES {
        for w in 0..SENTENCE_WORDS {
            if w > 0 {
                text.push(' ');
            }
            text.push_str(&words[zipf.sample(rng)]);
        }
        text.push_str(". ");
    }
    text.trim_end().to_owned()
}

fn question_from(passage: &str, rng: &mut StdRng) -> String {
    let words: Vec<&str> = passage.split_whitespace().collect();
    let start = rng.gen_range(0..words.len().saturating_sub(5).max(1));
    format!(
        "{}?",
        words[start..(start + 5).min(words.len())].join(" ").replace('.', "")
    )
}

/// Word ranks by Zipf's law (s = 1), as natural text has them.
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize) -> Self {
        let mut total = 0.0;
        let cumulative = (1..=n)
            .map(|rank| {
                total += 1.0 / rank as f64;
                total
            })
            .collect();
        Self { cumulative }
    }

    fn sample(&self, rng: &mut StdRng) -> usize {
        let target = rng.r#gen::<f64>() * self.cumulative.last().copied().unwrap_or(1.0);
        self.cumulative
            .partition_point(|&c| c < target)
            .min(self.cumulative.len() - 1)
    }
}
