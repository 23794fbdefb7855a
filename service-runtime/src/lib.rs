//! What every service binary needs to run, and none should write twice:
//! configuration from the environment, telemetry, the shutdown signal, its
//! own PostgreSQL schema, serving gRPC with health and reflection, the
//! principal the gateway passes in metadata and the
//! tokens that authenticate calls between components, and the conventions every
//! gRPC API follows (cursor pagination, field errors, times).
//!
//! It holds no domain logic, and nothing only some services use: events
//! are `event-pipeline`'s, calls out are `outbound-http`'s.

pub mod admin;
pub mod calls;
pub mod config;
pub mod database;
pub mod error;
pub mod exposition;
pub mod field_error;
pub mod grpc_client;
pub mod grpc_metrics;
pub mod grpc_server;
pub mod grpc_tls;
pub mod listener;
pub mod pagination;
pub mod principal;
pub mod proto_json;
pub mod retention;
pub mod rows;
pub mod shutdown;
pub mod telemetry;
pub mod time;
pub mod window;
