//! The service's SQL, one module per table. Every query that reads tenant
//! data takes the workspace id. Sealed credentials are written here but
//! never read back by the queries that serve the API.

pub mod integrations;
pub mod knowledge_queue;
pub mod shopify_catalog;
pub mod shopify_deliveries;
pub mod shopify_orders;
