//! The HTTP front: `POST /` with `X-Amz-Target: TrentService.<Operation>` (AWS JSON 1.1),
//! `GET /health`, `GET /metrics`. Every KMS request is SigV4-verified before anything else.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::error::{Kind, KmsError};
use crate::metrics::Metrics;
use crate::model::KIND_KEY;
use crate::ops::Caller;
use crate::service::Kms;
use crate::sigv4;

/// How far a request's signing time may be from ours (KMS: 5 minutes).
pub const MAX_SKEW_SECS: i64 = 300;
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// Largest request body accepted (KMS requests are a few KiB).
const MAX_BODY: usize = 1 << 20;

struct App {
    kms: Arc<Kms>,
    metrics: Metrics,
}

/// The router serving `kms`.
pub fn router(kms: Arc<Kms>) -> Router {
    let app = Arc::new(App {
        kms,
        metrics: Metrics::default(),
    });
    Router::new()
        .route("/", post(kms_request))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

/// Serves until `shutdown` resolves; requests in flight then finish.
pub async fn serve(
    kms: Arc<Kms>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(kms))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves over TLS (rustls with aws-lc-rs; PEM certificate chain and private key) until
/// `shutdown` resolves; requests in flight then get up to 30 s to finish.
pub async fn serve_tls(
    kms: Arc<Kms>,
    listener: std::net::TcpListener,
    cert: &std::path::Path,
    key: &std::path::Path,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // One process-wide provider, whatever other crates enabled.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
        .await
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot load the TLS certificate {} and key {}: {e}",
                    cert.display(),
                    key.display()
                ),
            )
        })?;
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        h.graceful_shutdown(Some(std::time::Duration::from_secs(30)));
    });
    listener.set_nonblocking(true)?;
    axum_server::from_tcp_rustls(listener, config)?
        .handle(handle)
        .serve(router(kms).into_make_service())
        .await
}

fn respond(status: u16, body: String, error_type: Option<&str>) -> Response {
    let mut r = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body,
    )
        .into_response();
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static(CONTENT_TYPE));
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        h.insert("x-amzn-requestid", v);
    }
    if let Some(t) = error_type.and_then(|t| HeaderValue::from_str(t).ok()) {
        h.insert("x-amzn-errortype", t);
    }
    r
}

fn error_response(aws_type: &str, status: u16, message: &str) -> Response {
    respond(
        status,
        json!({ "__type": aws_type, "message": message }).to_string(),
        Some(aws_type),
    )
}

fn kms_error(e: &KmsError) -> Response {
    error_response(e.kind.aws_type(), e.kind.status(), &e.message)
}

/// Verifies the signature and finds the caller.
fn authenticate(
    kms: &Kms,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Caller, KmsError> {
    // A keystore that cannot be reached is reported as such, not as an unknown access key.
    kms.refresh()?;
    let hs: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let req = sigv4::Request {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        headers: &hs,
        body,
    };
    let v = sigv4::verify(&req, kms, kms.now(), "kms", MAX_SKEW_SECS)?;
    if v.region != kms.id.region {
        return Err(KmsError::new(
            Kind::RequestSignature,
            format!(
                "Credential should be scoped to a valid region, not '{}'. ",
                v.region
            ),
        ));
    }
    match kms.user_of(&v.access_key_id)? {
        Some(user) => Ok(Caller {
            arn: kms.user_arn(&user),
            user,
        }),
        None => Err(KmsError::new(
            Kind::UnrecognizedClient,
            "The security token included in the request is invalid.",
        )),
    }
}

/// Operations answered on the async worker itself.
const INLINE: &[&str] = &[
    "Encrypt",
    "Decrypt",
    "ReEncrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateRandom",
    "GenerateMac",
    "VerifyMac",
    "Sign",
    "Verify",
    "DescribeKey",
    "GetPublicKey",
];

fn target(headers: &HeaderMap) -> &str {
    headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix("TrentService."))
        .unwrap_or("")
}

async fn kms_request(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let operation = target(&headers).to_string();
    let work = move |app: &App| {
        let caller = authenticate(&app.kms, &method, &uri, &headers, &body)?;
        let op = target(&headers);
        if op.is_empty() {
            return Err(KmsError::new(
                Kind::UnknownOperation,
                "Missing or invalid X-Amz-Target header; expected TrentService.<Operation>",
            ));
        }
        app.kms.handle(&caller, op, &body)
    };
    // Cryptographic operations work from memory (keys and material are cached): they run
    // right here. Everything else may write the keystore, which fsyncs, so it runs on the
    // blocking pool instead of stalling an async worker.
    let result = if INLINE.contains(&operation.as_str()) {
        work(&app)
    } else {
        let app2 = app.clone();
        tokio::task::spawn_blocking(move || work(&app2))
            .await
            .unwrap_or_else(|e| Err(KmsError::internal(e)))
    };
    let (response, outcome) = match result {
        Ok(v) => (respond(200, v.to_string(), None), "ok"),
        Err(e) => (kms_error(&e), e.kind.aws_type()),
    };
    let label = if crate::ops::OPERATIONS.contains(&operation.as_str()) {
        operation.as_str()
    } else {
        "unknown"
    };
    app.metrics.record(label, outcome, started.elapsed());
    response
}

async fn health() -> &'static str {
    "ok\n"
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let kms = app.kms.clone();
    let counts = tokio::task::spawn_blocking(
        move || -> Result<(BTreeMap<String, u64>, String), KmsError> {
            let mut by_state = BTreeMap::new();
            let mut after: Option<String> = None;
            loop {
                let page = kms.store.list(KIND_KEY, "", after.as_deref(), 1000)?;
                let Some(last) = page.last() else { break };
                after = Some(last.id.clone());
                for o in page {
                    let d: crate::model::KeyDoc =
                        serde_json::from_str(&o.doc).map_err(KmsError::internal)?;
                    *by_state.entry(d.state).or_insert(0) += 1;
                }
            }
            Ok((by_state, kms.extra_metrics()))
        },
    )
    .await;
    match counts {
        Ok(Ok((c, extra))) => (
            [("content-type", "text/plain; version=0.0.4")],
            app.metrics.render(&c) + &app.kms.key_metrics() + &extra,
        )
            .into_response(),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "metrics unavailable\n").into_response(),
    }
}
