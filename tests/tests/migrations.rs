//! Migrations run by a Job before a new version serves: a component set
//! to verify (`DATABASE_MIGRATIONS=verify`, as k8s/base sets it) refuses
//! to start on a schema that lacks any migration it knows, names what is
//! missing, and starts once `<binary> migrate` has applied them.

use e2e::infra::Infra;
use service_runtime::{
    config::Migrations,
    database::{self, DatabaseError},
};
use sqlx::migrate::Migrator;

fn components() -> [(&'static str, &'static Migrator); 5] {
    [
        (gateway::SCHEMA, &gateway::MIGRATIONS),
        (chatbot_service::SCHEMA, &chatbot_service::MIGRATIONS),
        (integration_service::SCHEMA, &integration_service::MIGRATIONS),
        (analytics_service::SCHEMA, &analytics_service::MIGRATIONS),
        (webhook_dispatcher::SCHEMA, &webhook_dispatcher::MIGRATIONS),
    ]
}

async fn verify(url: &str, schema: &str, migrator: &Migrator) -> Result<(), DatabaseError> {
    database::connect_and_migrate(url, schema, 1, migrator, Migrations::Verify)
        .await
        .map(|_| ())
}

#[tokio::test]
async fn a_verifying_component_refuses_an_unmigrated_schema_and_starts_once_the_job_has_run() {
    let infra = Infra::create().await;
    let url = infra.database_url.clone();
    for (schema, migrator) in components() {
        let known: Vec<i64> = migrator.iter().map(|m| m.version).collect();
        assert!(!known.is_empty(), "{schema} has migrations");
        match verify(&url, schema, migrator).await {
            Err(DatabaseError::Unmigrated { missing, .. }) => assert_eq!(missing, known, "{schema}"),
            other => panic!("{schema} on an empty database: {other:?}"),
        }
        database::migrate(&url, schema, migrator)
            .await
            .expect("the migration runs");
        verify(&url, schema, migrator)
            .await
            .unwrap_or_else(|e| panic!("{schema} starts once migrated: {e}"));
        database::migrate(&url, schema, migrator)
            .await
            .expect("running the Job again changes nothing");
    }
    infra.remove().await;
}

#[tokio::test]
async fn a_schema_one_migration_behind_is_refused_with_that_version_named() {
    let infra = Infra::create().await;
    let (schema, migrator) = (chatbot_service::SCHEMA, &chatbot_service::MIGRATIONS);
    database::migrate(&infra.database_url, schema, migrator).await.unwrap();
    let newest = migrator.iter().map(|m| m.version).max().unwrap();
    let pool = database::connect_and_migrate(&infra.database_url, schema, 1, migrator, Migrations::Verify)
        .await
        .unwrap();
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
        .bind(newest)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let refused = verify(&infra.database_url, schema, migrator).await.unwrap_err();
    let message = refused.to_string();
    assert!(
        matches!(&refused, DatabaseError::Unmigrated { missing, .. } if *missing == [newest]),
        "{message}"
    );
    assert!(message.contains("migrate") && message.contains(schema), "{message}");
    infra.remove().await;
}
