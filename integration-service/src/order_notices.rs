//! A customer hears in their open conversation when their order ships:
//! when an order the platform already held gains a tracking number (from
//! a webhook or a sync), a notice is written in the same transaction, and
//! any replica sends it to chatbot-service, which posts it as a bot
//! message in the conversation whose customer the workspace named (by
//! email or Shopify customer id). Each tracking number is told once; a
//! notice waits while chatbot-service is away, and is retried for a day.

use std::time::Duration;

use proto::chatbot::v1::NotifyCustomerRequest;
use service_runtime::error::ServiceError;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::{
    chatbot::Chatbot,
    kinds::shopify::payloads::{Order, Tracking},
    store::{
        order_notices::{self, Notice},
        shopify_catalog::{Source, Stored},
        shopify_orders,
    },
};

const POLL: Duration = Duration::from_secs(1);
const BATCH: i64 = 20;
/// Notices still undelivered after this many attempts (about a day of
/// doubling waits) are dropped: the news is stale by then.
const MAX_ATTEMPTS: i32 = 12;

/// Stores the order and, when it is one the platform held and it gained a
/// tracking number, the notice telling its customer.
pub async fn store_order(conn: &mut PgConnection, source: &Source<'_>, order: &Order) -> Result<Stored, ServiceError> {
    let (stored, before) = shopify_orders::upsert(conn, source, order).await?;
    if stored != Stored::Updated {
        return Ok(stored);
    }
    let email = order.email();
    let customer_id = order.customer.as_ref().and_then(|c| c.id);
    if email.is_empty() && customer_id.is_none() {
        return Ok(stored);
    }
    for tracking in order.tracking() {
        if before.iter().any(|b| b.number == tracking.number) {
            continue;
        }
        let notice = Notice {
            workspace_id: source.workspace_id.to_owned(),
            integration_id: source.integration_id.to_owned(),
            order_id: order.id,
            content: message(&order.name, &tracking),
            tracking_number: tracking.number,
            customer_email: email.clone(),
            customer_id,
        };
        order_notices::queue(conn, &notice).await?;
    }
    Ok(stored)
}

/// What the customer reads.
fn message(order_name: &str, tracking: &Tracking) -> String {
    let carrier = match tracking.company.is_empty() {
        true => String::new(),
        false => format!("{} ", tracking.company),
    };
    let link = match tracking.url.is_empty() {
        true => String::new(),
        false => format!(" Track it here: {}", tracking.url),
    };
    format!(
        "Good news: your order {order_name} has shipped. Its {carrier}tracking number is {}.{link}",
        tracking.number
    )
}

pub struct OrderNotices {
    pool: PgPool,
    chatbot: Chatbot,
}

impl OrderNotices {
    pub fn new(pool: PgPool, chatbot: Chatbot) -> Self {
        Self { pool, chatbot }
    }

    pub fn spawn(self, shutdown: CancellationToken) {
        tokio::spawn(async move {
            loop {
                if let Err(error) = self.round().await {
                    tracing::warn!(%error, "telling customers their orders shipped; will try again");
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(POLL) => {}
                }
            }
        });
    }

    async fn round(&self) -> Result<(), ServiceError> {
        for notice in order_notices::due(&self.pool, BATCH).await? {
            let request = NotifyCustomerRequest {
                customer_email: notice.customer_email.clone(),
                shopify_customer_id: notice.customer_id.map(|id| id.to_string()).unwrap_or_default(),
                content: notice.content.clone(),
                metadata: None,
                idempotency_key: notice.idempotency_key(),
            };
            match self.chatbot.notify_customer(&notice.workspace_id, request).await {
                Ok(delivered) => {
                    tracing::info!(
                        order = notice.order_id,
                        delivered,
                        "told a customer their order shipped"
                    );
                    order_notices::done(&self.pool, &notice).await?;
                }
                Err(error) => {
                    tracing::warn!(%error, order = notice.order_id, "a shipping notice was not delivered; it waits");
                    order_notices::retry_later(&self.pool, &notice, MAX_ATTEMPTS).await?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_order_the_carrier_and_the_link_it_has() {
        let tracking = Tracking {
            number: "1Z999".into(),
            company: "UPS".into(),
            url: "https://ups.example/1Z999".into(),
        };
        assert_eq!(
            message("#1001", &tracking),
            "Good news: your order #1001 has shipped. Its UPS tracking number is 1Z999. \
             Track it here: https://ups.example/1Z999"
        );
        let bare = Tracking {
            company: String::new(),
            url: String::new(),
            ..tracking
        };
        assert_eq!(
            message("#1001", &bare),
            "Good news: your order #1001 has shipped. Its tracking number is 1Z999."
        );
    }
}
