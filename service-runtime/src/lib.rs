//! Run-time pieces every service needs and none should write twice:
//! configuration from the environment, telemetry, the shutdown signal, the
//! per-service PostgreSQL schema, the principal the gateway passes in gRPC
//! metadata, cursor pagination, and serving gRPC with health and reflection.
//!
//! It holds no domain logic: conversations, bots and webhooks live in their
//! services.

pub mod amqp;
pub mod config;
pub mod database;
pub mod events;
pub mod field_error;
pub mod grpc_server;
pub mod listener;
pub mod outbox;
pub mod pagination;
pub mod principal;
pub mod shutdown;
pub mod target_guard;
pub mod telemetry;
pub mod time;
pub mod tls;
