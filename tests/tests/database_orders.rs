//! A customer's orders in the workspace's own database: named by a table
//! and its columns, or by one SELECT the workspace writes; read when the
//! bot is asked, for the conversation's verified customer only, with the
//! email bound (an injection attempt is just an email that matches
//! nobody), and refused when saved if the database would not run it.

use e2e::{
    Client, TestStack,
    customer_db::{CustomerDb, Engine},
};
use serde_json::{Value, json};

/// The bot's answer to "where is my order?" for `customer`.
async fn ask_for_orders(api: &Client, bot: &str, customer: Value) -> String {
    e2e::bots::ask_as(api, bot, customer, "Where is my order?").await
}

async fn orders_flow(engine: Engine, orders: Value) {
    let stack = TestStack::start().await;
    let api = &stack.client;
    let db = CustomerDb::create(engine).await;
    db.execute(
        "CREATE TABLE customers (id integer PRIMARY KEY, email varchar(100) NOT NULL);
         CREATE TABLE orders (id integer PRIMARY KEY, customer_id integer NOT NULL, ref varchar(20),
             status varchar(20) NOT NULL, total_amount decimal(10,2) NOT NULL, tracking varchar(40),
             placed_at timestamp(6) NOT NULL, email varchar(100) NOT NULL);
         INSERT INTO customers VALUES (1, 'ann@example.com'), (2, 'bob@example.com');
         INSERT INTO orders VALUES
             (501, 1, 'A-501', 'shipped', 25.00, 'JD014600', '2026-11-20 10:00:00', 'ann@example.com'),
             (502, 1, 'A-502', 'packed', 9.50, NULL, '2026-11-28 16:30:00', 'ann@example.com'),
             (601, 2, 'B-601', 'shipped', 120.00, 'LX42', '2026-11-25 08:00:00', 'bob@example.com');",
    )
    .await;

    // A mapping the database cannot run is refused when saved, with its word.
    let mut wrong = db.connect_request(&db.password);
    wrong["settings"]["orders"] = json!({"table": "orders", "id": "id", "customer_email": "mail",
        "status": "status", "total": "total_amount", "created_at": "placed_at"});
    let refused = api.post("/api/v1/integrations", wrong).await;
    refused.assert_problem(422, "unprocessable");
    assert!(
        refused.text.contains("settings.orders") && refused.text.contains("mail"),
        "{}",
        refused.text
    );

    let mut request = db.connect_request(&db.password);
    request["settings"]["orders"] = orders.clone();
    let created = api.post("/api/v1/integrations", request).await;
    assert_eq!(created.status, 200, "{}", created.text);
    assert_eq!(created.json["settings"]["orders"], orders);

    let bot = e2e::bots::create_bot(api, "Shop assistant", json!({})).await;
    let ann = ask_for_orders(api, &bot, json!({"email": "Ann@Example.com"})).await;
    let newest = ann.find("A-502").expect(&ann);
    let older = ann.find("A-501").expect(&ann);
    assert!(newest < older, "newest first: {ann}");
    assert!(ann.contains("9.50") && ann.contains("packed"), "{ann}");
    assert!(ann.contains("tracking number JD014600"), "{ann}");
    assert!(
        !ann.contains("LX42") && !ann.contains("B-601"),
        "Bob's order is not Ann's: {ann}"
    );

    let injected = ask_for_orders(api, &bot, json!({"email": "x' OR '1'='1"})).await;
    assert!(injected.starts_with("I could not find any orders"), "{injected}");
    let nobody = ask_for_orders(api, &bot, json!({})).await;
    assert!(!nobody.contains("A-50") && !nobody.contains("B-601"), "{nobody}");
    db.remove().await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_written_query_finds_the_verified_customers_orders_in_postgres() {
    let query = "SELECT o.id, o.ref AS name, o.status, o.total_amount AS total, 'EUR' AS currency, \
                 o.tracking AS tracking_number, o.placed_at AS created_at \
                 FROM orders o JOIN customers c ON c.id = o.customer_id \
                 WHERE lower(c.email) = lower(:customer_email)";
    orders_flow(Engine::Postgres, json!({ "query": query })).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapped_columns_find_the_verified_customers_orders_in_mariadb() {
    let mapping = json!({"table": "orders", "id": "id", "name": "ref", "customer_email": "email",
        "status": "status", "total": "total_amount", "created_at": "placed_at", "tracking_number": "tracking"});
    orders_flow(Engine::Mariadb, mapping).await;
}
