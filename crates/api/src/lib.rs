//! `herald-api`: the HTTP face of Herald. It validates, stores and enqueues; it never
//! delivers (workers do).
//!
//! | module | owns |
//! |---|---|
//! | [`routes`] | one file per resource, mounted by `routes::configure` |
//! | [`ingest`] | the commit-then-enqueue path shared by events and alerts |
//! | [`caller`] | which API key made a request, for limits per key |
//! | [`body`] | reading JSON bodies within the size limit |
//! | [`extract`] | extractors: validated JSON bodies, validated path ids, a database connection |
//! | [`auth`] | bearer keys with scopes, signed receipts |
//! | [`failed_keys`] | the limit on requests without a valid key, per client address |
//! | [`error`] | the JSON error type, its body and its HTTP mapping |
//! | [`metrics`] | Prometheus metrics: every definition, the queue sampler, the scrape's key |
//! | [`openapi`] | the OpenAPI document of every route (`/openapi.json`) |
//! | [`schema`] | OpenAPI schemas of the bodies core parses field by field |
//! | [`reads`] | which reads may go to a read replica, and read-your-writes |
//! | [`rate_limit`] | the optional rate limit per API key (`HERALD_RATE_LIMIT_PER_S`) |
//! | [`stream_slots`] | the limit on open live streams per API key (`HERALD_MAX_STREAMS_PER_KEY`) |
//! | [`state`] | settings and shared state |

pub mod auth;
pub mod body;
pub mod caller;
pub mod error;
pub mod extract;
pub mod failed_keys;
pub mod ingest;
pub mod metrics;
pub mod openapi;
pub mod rate_limit;
pub mod reads;
pub mod routes;
pub mod schema;
pub mod state;
pub mod stream_slots;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpResponse, HttpServer};
use error::{extractor_error, ApiError};
use herald_core::access::ApiKeys;
pub use state::{AppState, Settings, StreamSettings};
use std::net::TcpListener;
use std::sync::Arc;

/// Loads config, migrates the database and connects to Redis. Redis being down is
/// not fatal: ingestion still works and the workers' sweep catches up.
pub async fn build_state(settings: &Settings) -> anyhow::Result<AppState> {
    let config = herald_core::config::Config::load_dir(&settings.config_dir)?;
    herald_store::migrate::run(&settings.database_url).await?;
    let pool = herald_store::connect(&settings.database_url, settings.db_pool_size)?;
    let replica = match &settings.database_read_url {
        Some(url) => Some(herald_store::connect(url, settings.db_pool_size)?),
        None => None,
    };
    let redis = herald_queue::Redis::connect(
        &settings.redis_url,
        &settings.redis_prefix,
        settings.partitions,
    )?;
    let reads = reads::Reads::new(
        pool.clone(),
        replica,
        herald_queue::RecentWrites::new(redis.clone()),
    );
    let queue = herald_queue::Queue::new(redis.clone());
    match queue.claim_layout().await {
        Err(e @ herald_queue::QueueError::Layout(_)) => return Err(e.into()),
        Err(e) => {
            tracing::warn!(error = %e, "redis unavailable at start; events will wait in Postgres")
        }
        Ok(()) => {
            if let Err(e) = queue.ensure_groups().await {
                tracing::warn!(error = %e, "creating the queues failed; the workers will");
            }
        }
    }
    let metrics = metrics::Metrics::new();
    reads.sample_lag(
        metrics.replica_lag_bytes.clone(),
        metrics.replica_lag_seconds.clone(),
    );
    // Group commit runs on the runtime that builds the state, next to the server.
    let ingestor = ingest::Ingestor::start(
        pool.clone(),
        queue.clone(),
        metrics.ingest(),
        config.rules.clone(),
    );
    tokio::spawn(metrics::sample_queues(
        herald_queue::Backlogs::new(redis.clone()),
        metrics.queue_depth.clone(),
        metrics.queue_pending.clone(),
    ));
    let rate_limiter = settings
        .rate_limit_per_s
        .and_then(|n| rate_limit::RateLimiter::new(n, herald_queue::Counters::new(redis.clone())));
    Ok(AppState {
        inner: Arc::new(state::Inner {
            config,
            pool,
            reads,
            queue,
            changes: herald_queue::Changes::new(redis.clone()),
            // Subscribes at once, so the first stream does not wait for it.
            hub: herald_queue::ChangeHub::start(redis.clone()),
            stream_slots: stream_slots::StreamSlots::new(settings.streams.max_per_key),
            stream_recheck: settings.streams.recheck,
            stream_reads: Default::default(),
            heartbeats: herald_queue::Heartbeats::new(redis.clone()),
            api_keys: ApiKeys::parse(settings.api_keys.iter().map(String::as_str)),
            failed_keys: failed_keys::FailedKeys::new(herald_queue::Counters::new(redis.clone())),
            receipts_secret: settings.receipts_secret.clone(),
            client_ip_header: settings.client_ip_header.clone(),
            metrics_key: herald_core::access::MetricsKey::new(settings.metrics_key.as_deref()),
            allowed_targets: settings.allowed_targets.clone(),
            metrics,
            ingestor,
            rate_limiter,
        }),
    })
}

/// Starts serving on `listener`; the returned server runs until stopped.
pub fn run(state: AppState, listener: TcpListener) -> std::io::Result<Server> {
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PathConfig::default().error_handler(|e, _| extractor_error(e)))
            .app_data(web::QueryConfig::default().error_handler(|e, _| extractor_error(e)))
            .wrap(from_fn(auth::require_key))
            .wrap(from_fn(refuse_nul_in_url))
            .wrap(from_fn(count_requests))
            .configure(routes::configure)
            .default_service(web::to(not_found))
    })
    // A client closing its connection ends the request at once, instead of at the next
    // failed write: a live stream (which never finishes by itself) then gives back its
    // slot and stops watching as soon as its browser tab closes. Clients
    // that half-close after their request are not supported (no HTTP client does).
    .h1_allow_half_closed(false)
    .listen(listener)?
    .run();
    Ok(server)
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("no such route".into()))
}

/// A NUL character (`%00`) in the path or query can only be a probe or a mistake, and
/// Postgres stores none: 400 before any handler sees it (ids would reach queries).
async fn refuse_nul_in_url(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let uri = req.uri().to_string();
    if uri.to_ascii_lowercase().contains("%00") {
        return Err(ApiError::BadRequest(
            "the URL contains a NUL character (%00), which no id or parameter may hold".into(),
        )
        .into());
    }
    next.call(req).await
}

async fn count_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let method = req.method().to_string();
    let res = next.call(req).await;
    if let Some(state) = state {
        let status = match &res {
            Ok(r) => r.status(),
            Err(e) => e.as_response_error().status_code(),
        };
        state
            .metrics
            .requests
            .with_label_values(&[method.as_str(), status.as_str()])
            .inc();
    }
    res
}
