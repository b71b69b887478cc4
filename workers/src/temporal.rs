//! Connecting to Temporal and preparing a namespace for Archer.

use std::collections::HashMap;
use std::time::Duration;

use archer_orchestrator::workflows::search::{self, AttributeType};
use temporalio_client::tonic::IntoRequest;
use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions, Url};
use temporalio_common::protos::temporal::api::enums::v1::IndexedValueType;
use temporalio_common::protos::temporal::api::operatorservice::v1::{
    AddSearchAttributesRequest, ListSearchAttributesRequest,
};

/// Where Archer's workflows run.
#[derive(Debug, Clone)]
pub struct TemporalConfig {
    /// Frontend address, e.g. `http://127.0.0.1:7233`.
    pub address: Url,
    pub namespace: String,
    /// The task queue workers poll and workflows are started on.
    pub task_queue: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TemporalError {
    #[error("cannot connect to Temporal at {address}: {source}")]
    Connect { address: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("Temporal refused {what}: {source}")]
    Rpc { what: &'static str, source: temporalio_client::tonic::Status },
    #[error("the worker failed: {0}")]
    Worker(String),
}

/// Connects a namespace-bound client.
pub async fn connect(cfg: &TemporalConfig) -> Result<Client, TemporalError> {
    let err = |e: Box<dyn std::error::Error + Send + Sync>| TemporalError::Connect {
        address: cfg.address.to_string(),
        source: e,
    };
    let conn_opts = ConnectionOptions::new(cfg.address.clone())
        .identity(format!("archer@{}", std::process::id()))
        .connect_timeout(Duration::from_secs(10))
        .build();
    let connection = Connection::connect(conn_opts).await.map_err(|e| err(Box::new(e)))?;
    let mut options = ClientOptions::new(cfg.namespace.clone());
    if crate::telemetry::tracing_enabled() {
        // starts and signals carry the caller's trace context in Temporal's `_tracer-data`
        // header; a worker of this client continues it into workflows and activities
        options = options.plugin(temporalio_sdk::opentelemetry::OpenTelemetryPlugin::builder().build());
    }
    let client = Client::new(connection, options.build()).map_err(|e| err(Box::new(e)))?;
    Ok(client)
}

/// The type Temporal indexes a search attribute of type `ty` as.
pub fn indexed_value_type(ty: &AttributeType) -> IndexedValueType {
    match ty {
        AttributeType::Keyword => IndexedValueType::Keyword,
        AttributeType::Int => IndexedValueType::Int,
        AttributeType::Datetime => IndexedValueType::Datetime,
    }
}

/// Registers Archer's search attributes on the namespace if they are missing. Idempotent; on a
/// cluster where the operator API is not allowed, register them once by hand (see the README).
pub async fn ensure_search_attributes(client: &Client, namespace: &str) -> Result<(), TemporalError> {
    let mut ops = client.connection().operator_service();
    let existing = ops
        .list_search_attributes(ListSearchAttributesRequest { namespace: namespace.to_owned() }.into_request())
        .await
        .map_err(|source| TemporalError::Rpc { what: "listing search attributes", source })?
        .into_inner();
    let missing: HashMap<String, i32> = search::ALL
        .iter()
        .filter(|(name, _)| !existing.custom_attributes.contains_key(*name))
        .map(|(name, ty)| ((*name).to_owned(), indexed_value_type(ty) as i32))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    tracing::info!(attributes = ?missing.keys().collect::<Vec<_>>(), "registering search attributes");
    match ops
        .add_search_attributes(
            AddSearchAttributesRequest { search_attributes: missing, namespace: namespace.to_owned() }.into_request(),
        )
        .await
    {
        Ok(_) => Ok(()),
        // another process registered them first
        Err(s) if s.code() == temporalio_client::tonic::Code::AlreadyExists => Ok(()),
        Err(source) => Err(TemporalError::Rpc { what: "adding search attributes", source }),
    }
}
