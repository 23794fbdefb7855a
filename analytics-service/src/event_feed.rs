//! Reading the `events` exchange through a RabbitMQ stream of this
//! service's own. The stream keeps events for its retention, so the
//! statistics can always be rebuilt from it: a schema dropped (or never
//! made) has no stream position, and reading starts at the oldest event.
//!
//! One replica reads at a time: the one holding a PostgreSQL advisory
//! lock, so replicas never count the same events twice over (the event id
//! check would catch it, at twice the work). When the holder's session
//! ends, another replica takes over within seconds.

use std::time::Duration;

use event_pipeline::{
    BrokerSettings, Received,
    subscriber::{self, Handler, Queue, QueueKind},
};
use service_runtime::shutdown::slept;
use sqlx::{Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::tally;

/// How often a waiting replica tries the lock, and the holder checks it
/// still has its session.
const LOCK_CHECK: Duration = Duration::from_secs(3);
/// The advisory lock's key: "analytic" in ASCII, out of the way of others.
const LOCK_KEY: i64 = 0x616e_616c_7974_6963;

/// This service's stream on `exchange`.
pub fn stream_name(exchange: &str) -> String {
    format!("analytics-service.{exchange}")
}

/// How long start-up waits to declare the stream.
const DECLARE_TIMEOUT: Duration = Duration::from_secs(10);

fn queue(broker: &BrokerSettings, max_age: &str) -> Queue {
    Queue {
        name: stream_name(&broker.exchange),
        bindings: vec!["#".into()],
        prefetch: 1000,
        batch: 500,
        kind: QueueKind::Stream {
            max_age: max_age.to_owned(),
        },
    }
}

/// Declares the stream, so it keeps every event from now on, whichever
/// replica reads it and whenever. A broker that is down only delays this
/// to the first read.
pub async fn declare(broker: &BrokerSettings, max_age: &str) {
    match tokio::time::timeout(DECLARE_TIMEOUT, subscriber::declare(broker, &queue(broker, max_age))).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "could not declare the events stream yet"),
        Err(_) => tracing::warn!("declaring the events stream timed out; the reader will declare it"),
    }
}

/// Reads the stream whenever this replica holds the lock, until `shutdown`.
pub fn spawn(pool: PgPool, database_url: String, broker: BrokerSettings, max_age: String, shutdown: CancellationToken) {
    tokio::spawn(async move {
        loop {
            match PgConnection::connect(&database_url).await {
                Ok(session) => lead_while_locked(session, &pool, &broker, &max_age, &shutdown).await,
                Err(error) => tracing::warn!(%error, "analytics cannot reach PostgreSQL for its reader lock"),
            }
            if !slept(LOCK_CHECK, &shutdown).await {
                return;
            }
        }
    });
}

/// Waits for the lock on `session`, then reads until the session is lost
/// or `shutdown`.
async fn lead_while_locked(
    mut session: PgConnection,
    pool: &PgPool,
    broker: &BrokerSettings,
    max_age: &str,
    shutdown: &CancellationToken,
) {
    loop {
        match sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
            .bind(LOCK_KEY)
            .fetch_one(&mut session)
            .await
        {
            Ok(true) => break,
            Ok(false) => {}
            Err(_) => return,
        }
        if !slept(LOCK_CHECK, shutdown).await {
            return;
        }
    }
    let reading = shutdown.child_token();
    let queue = queue(broker, max_age);
    let stream = queue.name.clone();
    // Ready or not, the stream keeps its events for this replica or the
    // next reader: nothing waits on it being bound.
    let _bound = subscriber::spawn(
        broker.clone(),
        queue,
        Reader {
            pool: pool.clone(),
            stream,
        },
        reading.clone(),
    );
    tracing::info!("this replica reads the events stream");
    // The lock lives as long as the session: check it stays up.
    while slept(LOCK_CHECK, shutdown).await {
        if sqlx::query("SELECT 1").execute(&mut session).await.is_err() {
            tracing::warn!("lost the reader lock's session; another replica may take over");
            break;
        }
    }
    reading.cancel();
}

struct Reader {
    pool: PgPool,
    stream: String,
}

impl Handler for Reader {
    type Error = sqlx::Error;

    async fn handle(&self, events: Vec<Received>) -> Result<(), sqlx::Error> {
        tally::apply(&self.pool, &self.stream, &events).await
    }

    async fn resume_after(&self) -> Result<Option<u64>, sqlx::Error> {
        let offset: Option<i64> = sqlx::query_scalar("SELECT last_offset FROM stream_positions WHERE stream = $1")
            .bind(&self.stream)
            .fetch_optional(&self.pool)
            .await?;
        Ok(offset.and_then(|o| u64::try_from(o).ok()))
    }
}
