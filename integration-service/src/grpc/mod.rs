//! IntegrationService: connecting a workspace to other systems, the
//! connections it has, what they brought in, and the webhooks they
//! receive. Each RPC checks its request, hands it to the module that does
//! the work and answers with protos.

mod convert;

use ids::IntegrationId;
use proto::integration::v1::{
    CheckIntegrationRequest, CreateIntegrationRequest, CustomerOrdersRequest, DeleteIntegrationRequest,
    DeleteIntegrationResponse, FindProductsRequest, GetIntegrationRequest, Integration, ListDataRequestsResponse,
    ListIntegrationsRequest, ListIntegrationsResponse, ListLeadsResponse, ListOrdersResponse, ListProductsResponse,
    ListSyncRunsResponse, ListSyncedRequest, LookupCustomerRequest, LookupCustomerResponse,
    ReceiveInventoryWebhookRequest, ReceiveInventoryWebhookResponse, ReceiveShopifyWebhookRequest,
    ReceiveShopifyWebhookResponse, SyncIntegrationRequest, SyncRun, UpdateIntegrationRequest,
    integration_service_server::IntegrationService,
};
use service_runtime::{
    error::ServiceError,
    pagination::{NewestFirst, decode_cursor, finish_page, page_limit},
    principal::Principal,
    proto_json::json_to_struct,
};
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use crate::{
    checking::Checker,
    connecting::{Change, Connector},
    customer_lookup::CustomerLookup,
    db_orders::DatabaseOrders,
    inventory_inbox::InventoryInbox,
    kinds::Connection,
    reconciling::Reconciler,
    shopify_inbox::{Received, Receiver},
    store::{db_products, integrations, salesforce_leads, shopify_catalog, shopify_orders, sync_runs},
};

const MAX_NAME_CHARS: usize = 100;

pub struct Integrations {
    pub pool: PgPool,
    pub checker: Checker,
    pub connector: Connector,
    pub receiver: Receiver,
    pub inventory: InventoryInbox,
    pub orders: DatabaseOrders,
    pub reconciler: Reconciler,
    pub customers: CustomerLookup,
}

type Answer<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl IntegrationService for Integrations {
    async fn create_integration(&self, request: Request<CreateIntegrationRequest>) -> Answer<Integration> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let name = name(&req.name)?;
        let connection = Connection::parse(&req.kind, req.settings, req.credentials)?;
        let row = self
            .connector
            .connect(&principal.workspace_id, &name, connection)
            .await?;
        Ok(Response::new(row.into()))
    }

    async fn list_integrations(&self, request: Request<ListIntegrationsRequest>) -> Answer<ListIntegrationsResponse> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let page = NewestFirst::new(req.limit, &req.cursor)?;
        let rows = integrations::list(&self.pool, &principal.workspace_id, &page).await?;
        let (rows, next_cursor) = page.finish(rows, |r| (r.created_at, r.id.as_str()));
        Ok(Response::new(ListIntegrationsResponse {
            integrations: rows.into_iter().map(Integration::from).collect(),
            next_cursor,
        }))
    }

    async fn get_integration(&self, request: Request<GetIntegrationRequest>) -> Answer<Integration> {
        let principal = Principal::of(&request)?;
        let id = integration_id(&request.get_ref().integration_id)?;
        let row = integrations::get(&self.pool, &principal.workspace_id, &id).await?;
        Ok(Response::new(row.into()))
    }

    async fn check_integration(&self, request: Request<CheckIntegrationRequest>) -> Answer<Integration> {
        let principal = Principal::of(&request)?;
        let id = integration_id(&request.get_ref().integration_id)?;
        let row = self.checker.check(&principal.workspace_id, &id).await?;
        Ok(Response::new(row.into()))
    }

    async fn update_integration(&self, request: Request<UpdateIntegrationRequest>) -> Answer<Integration> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let id = integration_id(&req.integration_id)?;
        let change = Change {
            name: (!req.name.trim().is_empty()).then(|| name(&req.name)).transpose()?,
            credentials: req.credentials,
            settings: req.settings,
        };
        let row = self.connector.change(&principal.workspace_id, &id, change).await?;
        Ok(Response::new(row.into()))
    }

    async fn delete_integration(
        &self,
        request: Request<DeleteIntegrationRequest>,
    ) -> Answer<DeleteIntegrationResponse> {
        let principal = Principal::of(&request)?;
        let id = integration_id(&request.get_ref().integration_id)?;
        self.connector.disconnect(&principal.workspace_id, &id).await?;
        Ok(Response::new(DeleteIntegrationResponse {
            id: id.into_string(),
            deleted: true,
        }))
    }

    async fn sync_integration(&self, request: Request<SyncIntegrationRequest>) -> Answer<SyncRun> {
        let principal = Principal::of(&request)?;
        let id = integration_id(&request.get_ref().integration_id)?;
        let run = self.reconciler.request(&principal.workspace_id, &id).await?;
        Ok(Response::new(convert::sync_run(run)))
    }

    async fn list_sync_runs(&self, request: Request<ListSyncedRequest>) -> Answer<ListSyncRunsResponse> {
        let (workspace_id, req) = synced_request(request)?;
        let id = integration_id(&req.integration_id)?;
        integrations::get(&self.pool, &workspace_id, &id).await?;
        let page = NewestFirst::new(req.limit, &req.cursor)?;
        let rows = sync_runs::list(&self.pool, &workspace_id, id.as_str(), &page).await?;
        let (rows, next_cursor) = page.finish(rows, |r| (r.queued_at, r.id.as_str()));
        Ok(Response::new(ListSyncRunsResponse {
            sync_runs: rows.into_iter().map(convert::sync_run).collect(),
            next_cursor,
        }))
    }

    async fn list_leads(&self, request: Request<ListSyncedRequest>) -> Answer<ListLeadsResponse> {
        let (workspace_id, req) = synced_request(request)?;
        let id = integration_id(&req.integration_id)?;
        integrations::get(&self.pool, &workspace_id, &id).await?;
        let page = NewestFirst::new(req.limit, &req.cursor)?;
        let rows = salesforce_leads::list(&self.pool, &workspace_id, id.as_str(), &page).await?;
        let (rows, next_cursor) = page.finish(rows, |r| (r.created_at, r.id.as_str()));
        Ok(Response::new(ListLeadsResponse {
            leads: rows.into_iter().map(convert::lead).collect(),
            next_cursor,
        }))
    }

    async fn lookup_customer(&self, request: Request<LookupCustomerRequest>) -> Answer<LookupCustomerResponse> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let id = integration_id(&req.integration_id)?;
        let found = self
            .customers
            .by_email(&principal.workspace_id, &id, &req.email)
            .await?;
        Ok(Response::new(LookupCustomerResponse {
            contacts: found.contacts.into_iter().map(json_to_struct).collect(),
            leads: found.leads.into_iter().map(json_to_struct).collect(),
            cached: found.cached,
        }))
    }

    async fn list_products(&self, request: Request<ListSyncedRequest>) -> Answer<ListProductsResponse> {
        let (workspace_id, req) = synced_request(request)?;
        let id = integration_id(&req.integration_id)?;
        let kind = integrations::get(&self.pool, &workspace_id, &id).await?.kind;
        if kind == "postgres" || kind == "mysql" {
            let limit = page_limit(req.limit)?;
            let after = decode_cursor(&req.cursor)?.unwrap_or_default();
            let rows = db_products::list(&self.pool, &workspace_id, id.as_str(), &after, limit + 1).await?;
            let (rows, next_cursor) = finish_page(rows, limit, |p| p.external_id.clone());
            return Ok(Response::new(ListProductsResponse {
                products: rows.into_iter().map(convert::database_product).collect(),
                next_cursor,
            }));
        }
        let (id, after, limit) = by_id_page(&req)?;
        let rows = shopify_catalog::list_products(&self.pool, &workspace_id, id.as_str(), after, limit + 1).await?;
        let (rows, next_cursor) = finish_page(rows, limit, |p| p.product_id.to_string());
        Ok(Response::new(ListProductsResponse {
            products: rows.into_iter().map(convert::product).collect(),
            next_cursor,
        }))
    }

    async fn list_orders(&self, request: Request<ListSyncedRequest>) -> Answer<ListOrdersResponse> {
        let (workspace_id, req) = synced_request(request)?;
        let (id, after, limit) = by_id_page(&req)?;
        // Another workspace's integration, or none, is NOT_FOUND, not an
        // empty page.
        integrations::get(&self.pool, &workspace_id, &id).await?;
        let rows = shopify_orders::list(&self.pool, &workspace_id, id.as_str(), after, limit + 1).await?;
        let (rows, next_cursor) = finish_page(rows, limit, |o| o.order_id.to_string());
        Ok(Response::new(ListOrdersResponse {
            orders: rows.into_iter().map(convert::order).collect(),
            next_cursor,
        }))
    }

    async fn customer_orders(&self, request: Request<CustomerOrdersRequest>) -> Answer<ListOrdersResponse> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let email = Some(req.customer_email.trim()).filter(|e| !e.is_empty());
        let customer_id = match req.shopify_customer_id.trim() {
            "" => None,
            id => Some(id.parse::<i64>().map_err(|_| {
                ServiceError::invalid(
                    "shopify_customer_id",
                    "must be a Shopify customer id (a 64-bit integer)",
                )
            })?),
        };
        if email.is_none() && customer_id.is_none() {
            return Err(
                ServiceError::invalid("customer_email", "name the customer by email or shopify_customer_id").into(),
            );
        }
        let limit = lookup_limit(req.limit)?;
        let rows =
            shopify_orders::customer_latest(&self.pool, &principal.workspace_id, email, customer_id, limit).await?;
        let mut orders: Vec<_> = rows.into_iter().map(convert::order).collect();
        if let Some(email) = email {
            orders.extend(self.orders.for_customer(&principal.workspace_id, email, limit).await?);
            orders.sort_by_key(|o| std::cmp::Reverse(o.created_at.as_ref().map(|t| (t.seconds, t.nanos))));
            orders.truncate(limit as usize);
        }
        Ok(Response::new(ListOrdersResponse {
            orders,
            next_cursor: String::new(),
        }))
    }

    async fn find_products(&self, request: Request<FindProductsRequest>) -> Answer<ListProductsResponse> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let words: Vec<String> = req
            .query
            .split_whitespace()
            .take(8)
            .map(|w| w.chars().take(50).collect())
            .collect();
        if words.is_empty() {
            return Err(ServiceError::invalid("query", "name the product").into());
        }
        let limit = lookup_limit(req.limit)?;
        let patterns: Vec<String> = words.iter().map(|w| shopify_catalog::containing(w)).collect();
        let workspace_id = &principal.workspace_id;
        let rows = shopify_catalog::find_products(&self.pool, workspace_id, &patterns, limit).await?;
        let mut products: Vec<_> = rows.into_iter().map(convert::product).collect();
        let rows = db_products::find(&self.pool, workspace_id, &patterns, limit).await?;
        products.extend(rows.into_iter().map(convert::database_product));
        products.truncate(limit as usize);
        Ok(Response::new(ListProductsResponse {
            products,
            next_cursor: String::new(),
        }))
    }

    async fn list_data_requests(&self, request: Request<ListSyncedRequest>) -> Answer<ListDataRequestsResponse> {
        let (workspace_id, req) = synced_request(request)?;
        let id = integration_id(&req.integration_id)?;
        integrations::get(&self.pool, &workspace_id, &id).await?;
        let page = NewestFirst::new(req.limit, &req.cursor)?;
        let rows = shopify_orders::data_requests(&self.pool, &workspace_id, id.as_str(), &page).await?;
        let (rows, next_cursor) = page.finish(rows, |r| (r.created_at, r.id.as_str()));
        Ok(Response::new(ListDataRequestsResponse {
            data_requests: rows.into_iter().map(convert::data_request).collect::<Result<_, _>>()?,
            next_cursor,
        }))
    }

    /// No principal: Shopify calls it, and the delivery's signature says
    /// which connection it is for.
    async fn receive_shopify_webhook(
        &self,
        request: Request<ReceiveShopifyWebhookRequest>,
    ) -> Answer<ReceiveShopifyWebhookResponse> {
        let req = request.into_inner();
        let received = self
            .receiver
            .receive(&req.integration_id, &req.body, &req.headers)
            .await?;
        Ok(Response::new(ReceiveShopifyWebhookResponse {
            accepted: true,
            duplicate: matches!(received, Received::Duplicate),
        }))
    }

    /// No principal: the workspace's own system calls it, and the
    /// signature under the connection's secret says it may.
    async fn receive_inventory_webhook(
        &self,
        request: Request<ReceiveInventoryWebhookRequest>,
    ) -> Answer<ReceiveInventoryWebhookResponse> {
        let req = request.into_inner();
        let taken = self
            .inventory
            .receive(&req.integration_id, &req.body, &req.headers)
            .await?;
        Ok(Response::new(ReceiveInventoryWebhookResponse {
            accepted: true,
            duplicate: taken.duplicate,
            updated: taken.updated as i32,
            stale: taken.stale as i32,
            unknown_product_ids: taken.unknown,
        }))
    }
}

fn synced_request(request: Request<ListSyncedRequest>) -> Result<(String, ListSyncedRequest), Status> {
    let principal = Principal::of(&request)?;
    Ok((principal.workspace_id, request.into_inner()))
}

/// A list keyed by Shopify's ids: the integration, the id to continue
/// after and the page size.
fn by_id_page(req: &ListSyncedRequest) -> Result<(IntegrationId, i64, i64), Status> {
    let id = integration_id(&req.integration_id)?;
    let limit = page_limit(req.limit)?;
    let after = match decode_cursor(&req.cursor)? {
        Some(position) => position
            .parse()
            .map_err(|_| ServiceError::invalid("cursor", "is not a cursor returned by this API"))?,
        None => i64::MIN,
    };
    Ok((id, after, limit))
}

fn integration_id(value: &str) -> Result<IntegrationId, ServiceError> {
    Ok(IntegrationId::parse("integration_id", value)?)
}

fn name(value: &str) -> Result<String, ServiceError> {
    let name = value.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ServiceError::invalid(
            "name",
            format!("must be 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    Ok(name.to_owned())
}

/// The size of a lookup other services make: 1..20, default 5.
fn lookup_limit(limit: i32) -> Result<i64, ServiceError> {
    match limit {
        0 => Ok(5),
        n @ 1..=20 => Ok(i64::from(n)),
        _ => Err(ServiceError::invalid("limit", "must be 1..20")),
    }
}
