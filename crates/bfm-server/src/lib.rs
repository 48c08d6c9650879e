//! `bfm serve`: the BfM-compatible HTTP API (axum) and gRPC API (tonic), the OpenAPI document,
//! bearer auth, liveness and readiness, Prometheus metrics, auto-migrate at start-up, and
//! catalogue reloads on file changes. Handlers call the engine's [`bfm_engine::Service`] and
//! nothing else.

pub mod auth;
pub mod automigrate;
pub mod error;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod openapi;
pub mod watcher;

use crate::auth::Token;
pub use crate::grpc::GrpcSettings;
use crate::http::AppState;
use crate::metrics::{Metrics, MetricsObserver, RequestLabels};
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use bfm_engine::{Engine, Service};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

/// Every route, for the router and for the test that checks the OpenAPI document covers them.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/health"),
    ("GET", "/api/v1/health"),
    ("GET", "/metrics"),
    ("GET", "/api/v1/openapi.yaml"),
    ("GET", "/api/v1/openapi.json"),
    ("POST", "/api/v1/migrate"),
    ("POST", "/api/v1/migrations/up"),
    ("POST", "/api/v1/migrations/down"),
    ("POST", "/api/v1/migrations/order-batch"),
    ("POST", "/api/v1/migrations/reindex"),
    ("GET", "/api/v1/migrations"),
    ("GET", "/api/v1/migrations/executions/recent"),
    ("GET", "/api/v1/migrations/skipped/recent"),
    ("GET", "/api/v1/migrations/{id}"),
    ("GET", "/api/v1/migrations/{id}/status"),
    ("GET", "/api/v1/migrations/{id}/applied"),
    ("GET", "/api/v1/migrations/{id}/history"),
    ("GET", "/api/v1/migrations/{id}/executions"),
    ("GET", "/api/v1/migrations/{id}/skipped"),
    ("POST", "/api/v1/migrations/{id}/rollback"),
    ("GET", "/api/v1/schema/{connection}/status"),
    ("POST", "/api/v1/schema/{connection}/plan"),
    ("POST", "/api/v1/schema/{connection}/apply"),
    ("GET", "/api/v1/schema/{connection}/validate"),
    ("POST", "/api/v1/schema/{connection}/dump"),
];

/// HTTP settings (environment: `BFM_HTTP_*`, `BFM_CORS_ORIGINS`).
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub addr: SocketAddr,
    /// Allowed browser origins; empty: CORS off.
    pub cors_origins: Vec<String>,
    pub body_limit: usize,
    /// Timeout of read-only requests (runs are not cut off: a cancelled run would lose its rest).
    pub read_timeout: Duration,
}

impl HttpSettings {
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<HttpSettings, String> {
        let port: u16 = match get("BFM_HTTP_PORT") {
            Some(p) => p.trim().parse().map_err(|_| format!("BFM_HTTP_PORT: must be a port number, not {p:?}"))?,
            None => 7070,
        };
        let host = get("BFM_HTTP_HOST").unwrap_or_else(|| "0.0.0.0".into());
        let ip: std::net::IpAddr = host.trim().parse().map_err(|_| format!("BFM_HTTP_HOST: must be an IP address, not {host:?}"))?;
        let cors_origins = get("BFM_CORS_ORIGINS")
            .map(|v| v.split(',').map(|o| o.trim().to_string()).filter(|o| !o.is_empty()).collect())
            .unwrap_or_default();
        let body_limit = match get("BFM_HTTP_BODY_LIMIT") {
            Some(v) => v.trim().parse().map_err(|_| format!("BFM_HTTP_BODY_LIMIT: must be a number of bytes, not {v:?}"))?,
            None => 1 << 20,
        };
        let read_timeout = match get("BFM_HTTP_TIMEOUT") {
            Some(v) => bfm_engine::config::parse_duration(&v).ok_or_else(|| format!("BFM_HTTP_TIMEOUT: invalid duration {v:?}"))?,
            None => Duration::from_secs(30),
        };
        Ok(HttpSettings { addr: SocketAddr::new(ip, port), cors_origins, body_limit, read_timeout })
    }
}

/// One log line per request (not for the health probes), with the request id; and the
/// request counter.
async fn access_log(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let request_id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let response = next.run(req).await;
    let status = response.status();
    metrics
        .requests
        .get_or_create(&RequestLabels {
            method: metrics::method_label(&method).to_string(),
            route: route.clone(),
            status: status.as_u16().to_string(),
        })
        .inc();
    if path != "/health" && path != "/api/v1/health" {
        tracing::info!(
            method = %method,
            path = %path,
            status = status.as_u16(),
            latency_ms = start.elapsed().as_secs_f64() * 1000.0,
            request_id = %request_id,
            connection_type = "http",
            "request"
        );
    }
    response
}

/// The application: routes, auth, limits, CORS, request ids, logs.
pub fn router(service: Arc<Service>, metrics: Arc<Metrics>, token: Token, settings: &HttpSettings) -> Router {
    let state = AppState { service, metrics: metrics.clone() };
    let public = Router::new()
        .route("/health", get(http::liveness))
        .route("/api/v1/openapi.yaml", get(http::openapi_yaml))
        .route("/api/v1/openapi.json", get(http::openapi_json));
    let reads = Router::new()
        .route("/api/v1/health", get(http::readiness))
        .route("/metrics", get(http::metrics))
        .route("/api/v1/migrations", get(http::list))
        .route("/api/v1/migrations/executions/recent", get(http::recent_executions))
        .route("/api/v1/migrations/skipped/recent", get(http::recent_skipped))
        .route("/api/v1/migrations/{id}", get(http::detail))
        .route("/api/v1/migrations/{id}/status", get(http::status))
        .route("/api/v1/migrations/{id}/applied", get(http::applied))
        .route("/api/v1/migrations/{id}/history", get(http::history))
        .route("/api/v1/migrations/{id}/executions", get(http::executions))
        .route("/api/v1/migrations/{id}/skipped", get(http::skipped))
        .route("/api/v1/migrations/order-batch", post(http::order_batch))
        .route("/api/v1/schema/{connection}/status", get(http::schema_status))
        .route("/api/v1/schema/{connection}/plan", post(http::schema_plan))
        .route("/api/v1/schema/{connection}/validate", get(http::schema_validate))
        .route("/api/v1/schema/{connection}/dump", post(http::schema_dump))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(axum::http::StatusCode::GATEWAY_TIMEOUT, settings.read_timeout));
    let runs = Router::new()
        .route("/api/v1/migrate", post(http::migrate))
        .route("/api/v1/migrations/up", post(http::migrate_up))
        .route("/api/v1/migrations/down", post(http::migrate_down))
        .route("/api/v1/migrations/reindex", post(http::reindex))
        .route("/api/v1/migrations/{id}/rollback", post(http::rollback))
        .route("/api/v1/schema/{connection}/apply", post(http::schema_apply));
    let protected = reads.merge(runs).route_layer(middleware::from_fn_with_state(token, auth::require));
    let request_id = HeaderName::from_static("x-request-id");
    let mut app = public
        .merge(protected)
        .fallback(http::not_found)
        .with_state(state)
        .layer(DefaultBodyLimit::max(settings.body_limit))
        .layer(middleware::map_response(error::json_errors))
        .layer(middleware::from_fn_with_state(metrics, access_log));
    if !settings.cors_origins.is_empty() {
        // `*` means any origin; credentials are never allowed, so that stays safe (and the
        // list form would refuse the wildcard).
        let allow = if settings.cors_origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(settings.cors_origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
        };
        app = app.layer(
            CorsLayer::new()
                .allow_origin(allow)
                .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    HeaderName::from_static("x-client-type"),
                    HeaderName::from_static("x-requested-with"),
                ])
                .max_age(Duration::from_secs(86_400)),
        );
    }
    app.layer(PropagateRequestIdLayer::new(request_id.clone())).layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// Run the server (HTTP, and gRPC unless `grpc` is `None`) until `shutdown` resolves; then
/// stop taking requests, stop starting new steps, let running ones finish (their locks are
/// released) and calls in flight end, and return.
pub async fn serve(
    engine: Arc<Engine>,
    token: Token,
    settings: HttpSettings,
    grpc: Option<GrpcSettings>,
    auto: automigrate::AutoMigrate,
    watch: bool,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let started = Instant::now();
    let service = Arc::new(Service::new(engine.clone()));
    // The engine read the catalogue when it opened; record it.
    match service.record_catalog().await {
        Ok(r) => tracing::info!(migrations = engine.catalog().len(), added = r.added.len(), missing = r.missing.len(), "catalogue loaded"),
        Err(e) => return Err(format!("recording the catalogue in the state store: {e}")),
    }
    for d in engine.diagnostics().iter().filter(|d| d.severity == bfm_core::Severity::Error) {
        tracing::warn!(problem = %d, "migration not loaded");
    }
    // Plans and drift checks repeat in a server: keep their introspection connections.
    bfm_schema::set_connection_reuse(true);
    let metrics = Arc::new(Metrics::new());
    engine.set_observer(Arc::new(MetricsObserver(metrics.clone())));
    let app = router(service.clone(), metrics.clone(), token.clone(), &settings);
    let listener = tokio::net::TcpListener::bind(settings.addr).await.map_err(|e| format!("cannot listen on {}: {e}", settings.addr))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let grpc_listener = match &grpc {
        Some(g) => {
            let l = tokio::net::TcpListener::bind(g.addr).await.map_err(|e| format!("cannot listen on {} (gRPC): {e}", g.addr))?;
            tracing::info!(addr = %l.local_addr().map_err(|e| e.to_string())?, "bfm listening (gRPC)");
            Some(l)
        }
        None => None,
    };
    tracing::info!(%addr, startup_ms = started.elapsed().as_millis() as u64, "bfm listening (HTTP)");

    let _watcher = if watch {
        let mut paths: Vec<std::path::PathBuf> = engine.config().sfm_path.iter().filter(|p| p.is_dir()).cloned().collect();
        paths.extend(engine.config().golang_migrate_sources().into_iter().map(|s| s.path).filter(|p| p.is_dir()));
        watcher::spawn(service.clone(), paths)
    } else {
        None
    };
    let auto_task = {
        let service = service.clone();
        tokio::spawn(async move { auto.run(service).await })
    };

    // One stop signal for both servers: SIGTERM, or either server failing.
    let stop = Arc::new(tokio::sync::watch::channel(false).0);
    {
        let stop = stop.clone();
        let engine = engine.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down: finishing running steps");
            engine.begin_shutdown();
            stop.send_replace(true);
        });
    }
    let fail = |e: String| {
        engine.begin_shutdown();
        stop.send_replace(true);
        e
    };
    let http = async {
        let mut stopped = stop.subscribe();
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|v| *v).await;
            })
            .await
            .map_err(|e| fail(format!("server error: {e}")))
    };
    let grpc = async {
        match (grpc, grpc_listener) {
            (Some(g), Some(l)) => grpc::serve(service.clone(), token.clone(), metrics.clone(), g, l, stop.subscribe()).await.map_err(fail),
            _ => Ok(()),
        }
    };
    let (http_result, grpc_result) = tokio::join!(http, grpc);
    auto_task.abort();
    engine.close().await;
    http_result?;
    grpc_result?;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_in_the_openapi_document() {
        let doc = serde_json::to_value(openapi::document()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        for (method, path) in ROUTES {
            let op = &doc["paths"][path][method.to_ascii_lowercase()];
            assert!(op.is_object(), "{method} {path} missing from the OpenAPI document");
            let public = matches!(*path, "/health" | "/api/v1/openapi.yaml" | "/api/v1/openapi.json");
            assert_eq!(op["security"].is_array(), !public, "{method} {path}: security");
        }
        let documented: usize = doc["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(documented, ROUTES.len(), "the document has routes the server does not serve");
        assert!(doc["components"]["schemas"]["ErrorResponse"].is_object());
        assert!(openapi::document().to_yaml().unwrap().contains("/api/v1/migrations/{id}/rollback"));
    }
}
