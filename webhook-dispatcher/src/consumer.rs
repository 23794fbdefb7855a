//! Turns consumed events into deliveries: one row per matching enabled
//! endpoint of the event's workspace, committed before the events are
//! acknowledged (the subscriber's contract), so a crash at any point loses
//! nothing: an unacknowledged event comes back, and recording it twice is
//! a no-op.

use event_pipeline::{
    BrokerSettings, Received,
    subscriber::{self, Handler, Queue, QueueKind},
};
use service_runtime::telemetry::{propagation, spans};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::{
    delivery::{Dispatcher, Leased, Target},
    endpoint_rules,
    error::Error,
    store::{
        deliveries::{self, NewDeliveries},
        endpoints::{self, Subscriber},
    },
};

/// The dispatcher's queue on `exchange`.
pub fn queue_name(exchange: &str) -> String {
    event_pipeline::broker::dispatcher_queue(exchange)
}

/// Consumes every event of `broker`'s exchange until `shutdown`; the
/// dispatcher is ready once its queue is bound.
pub fn spawn(
    pool: PgPool,
    dispatcher: Dispatcher,
    broker: BrokerSettings,
    shutdown: CancellationToken,
) -> subscriber::Bound {
    let queue = Queue {
        name: queue_name(&broker.exchange),
        bindings: vec!["#".into()],
        prefetch: 1000,
        // Half the prefetch: the next batch arrives while one is recorded.
        batch: 500,
        kind: QueueKind::Quorum,
    };
    let recorder = Recorder {
        pool,
        dispatcher,
        queue: queue.name.clone(),
    };
    subscriber::spawn(broker, queue, recorder, shutdown)
}

struct Recorder {
    pool: PgPool,
    dispatcher: Dispatcher,
    queue: String,
}

impl Handler for Recorder {
    type Error = Error;

    /// Stores the events and one pending delivery per interested endpoint
    /// in one statement. Deliveries of endpoints with room are leased by it
    /// and handed to the senders once it has committed. The endpoints are
    /// read just before: one deleted in between fails the statement (its
    /// deliveries' foreign key), and the batch is redelivered and read
    /// afresh.
    async fn handle(&self, events: Vec<Received>) -> Result<(), Error> {
        // One span per event, child of its publication; its id is stored
        // with the event, so every delivery attempt, retries included,
        // hangs under it.
        let processing: Vec<tracing::Span> = events
            .iter()
            .map(|event| {
                let span = spans::process(&self.queue, event.id.as_str());
                propagation::adopt(&span, event.traceparent.as_deref());
                span
            })
            .collect();
        let traceparents: Vec<Option<String>> = processing.iter().map(propagation::traceparent_of).collect();
        let workspaces: Vec<&str> = events.iter().map(|e| e.workspace_id.as_str()).collect();
        let subscribers = endpoints::subscribers(&self.pool, &workspaces).await?;
        let mut rows = NewDeliveries::default();
        let mut wanted = Vec::new();
        for (n, event) in events.iter().enumerate() {
            for subscriber in subscribers.iter().filter(|s| wants(s, event)) {
                let direct = direct(subscriber) && self.dispatcher.has_room(subscriber.id.as_str());
                rows.push(event, &subscriber.id, subscriber.ordered_by_conversation, direct);
                wanted.push((n, subscriber));
            }
        }
        let inserted = rows
            .insert(&self.pool, &events, &traceparents, self.dispatcher.lease())
            .await?;
        let left_for_claims = inserted.iter().any(|row| !row.leased);
        let handed: Vec<Leased> = inserted
            .into_iter()
            .filter(|row| row.leased)
            .map(|row| {
                let (n, subscriber) = wanted[row.n as usize - 1];
                Leased {
                    id: row.id,
                    endpoint_id: subscriber.id.clone(),
                    event_id: events[n].id.clone(),
                    attempts: 0,
                    lease: row.next_attempt_at,
                    traceparent: traceparents[n].clone(),
                    target: target(subscriber, &events[n].body),
                }
            })
            .collect();
        self.dispatcher.hand_off(handed);
        if left_for_claims && let Err(error) = deliveries::wake(&self.pool).await {
            // The events are recorded whatever happens here: the claim
            // loop also looks on its own, so a lost wake-up only delays
            // them.
            tracing::warn!(%error, "waking the claim loop");
        }
        Ok(())
    }
}

fn wants(subscriber: &Subscriber, event: &Received) -> bool {
    subscriber.workspace_id == event.workspace_id && endpoint_rules::wants(&subscriber.event_types, &event.event_type)
}

/// Whether an endpoint's deliveries may skip the claim loop: ordered and
/// rate-limited ones need its checks.
fn direct(subscriber: &Subscriber) -> bool {
    !subscriber.ordered_by_conversation && subscriber.rate_limit_per_second.is_none()
}

fn target(subscriber: &Subscriber, body: &[u8]) -> Target {
    Target {
        url: subscriber.url.clone(),
        enabled: true,
        secret_sealed: subscriber.secret_sealed.clone(),
        previous_secret_sealed: subscriber.previous_secret_sealed.clone(),
        previous_secret_expires_at: subscriber.previous_secret_expires_at,
        rate_limit_per_second: None,
        body: body.to_vec(),
    }
}
