//! `kura bench server`: the KMS server over HTTP against a bare HTTP server, driven the
//! same way in the same run.
//!
//! "kura" is an in-process KMS (a keystore in a temporary directory, a random master key,
//! one user and one symmetric key) served on a loopback port by the router `kura server`
//! uses. "bare" is an axum server on another loopback port that answers `POST /` with a
//! precomputed copy of a real Encrypt response (same body, same headers) and does no work
//! at all: it is the floor set by HTTP, the framework and the client.
//!
//! Each is driven in turn by 16 keep-alive HTTP/1.1 connections for a fixed time (quick:
//! 2 s, full: 10 s, after a short warm-up), each connection sending one request at a time:
//! an Encrypt of 256 bytes, SigV4-signed afresh for every request as real clients do (the
//! bare server gets the same requests). Throughput counts the responses completed inside
//! the window; latency runs from sending a request to the last byte of its response.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use kura_crypto::Key256;
use kura_keys::clock::SystemClock;
use kura_keys::config::{DEFAULT_ROTATION_PERIOD, Method as DataMethod};
use kura_keys::{Keyring, KeyringSettings, LocalMasterKey};
use kura_server::{Identity, KMS_KEYRING, Kms};
use kura_store::{SqliteKeystore, Store};
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cli::{BenchArgs, Cli};
use crate::cmd::bench::{Row, table};
use crate::output::emit;

/// Concurrent keep-alive connections to each server.
const CONNECTIONS: usize = 16;
/// Bytes of plaintext in each Encrypt request.
const PLAINTEXT_BYTES: usize = 256;
/// No connection sends more than this many requests, however fast the server.
const MAX_REQUESTS_PER_CONNECTION: usize = 1 << 22;
/// A request unanswered for this long fails the benchmark.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

#[derive(Serialize)]
struct Requests {
    kura: u64,
    raw: u64,
}

#[derive(Serialize)]
struct Report {
    quick: bool,
    mode: &'static str,
    connections: usize,
    seconds_each: f64,
    plaintext_bytes: usize,
    response_bytes: usize,
    /// Responses completed inside each measurement window.
    requests: Requests,
    results: Vec<Row>,
}

/// Signs KMS requests for one server, afresh for each request.
struct Signer {
    credentials: Credentials,
    host: String,
    url: String,
}

impl Signer {
    fn new(addr: SocketAddr, access_key_id: &str, secret: &str) -> Self {
        Self {
            credentials: Credentials::new(access_key_id, secret, None, None, "kura-bench"),
            host: addr.to_string(),
            url: format!("http://{addr}/"),
        }
    }

    /// `POST /` with `X-Amz-Target: TrentService.<operation>` and `body`, signed now.
    fn request(&self, operation: &str, body: &Bytes) -> Result<Request<Full<Bytes>>> {
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(kura_server::DEFAULT_REGION)
            .name("kms")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()?
            .into();
        let target = format!("TrentService.{operation}");
        let headers = [
            ("host", self.host.as_str()),
            ("content-type", CONTENT_TYPE),
            ("x-amz-target", target.as_str()),
        ];
        let signable = SignableRequest::new(
            "POST",
            self.url.as_str(),
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )?;
        let (instructions, _signature) = sign(signable, &params)?.into_parts();
        let mut b = Request::builder().method(Method::POST).uri("/");
        for (name, value) in headers.iter().copied().chain(instructions.headers()) {
            b = b.header(name, value);
        }
        Ok(b.body(Full::new(body.clone()))?)
    }
}

/// One keep-alive HTTP/1.1 connection to `addr`.
async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    tcp.set_nodelay(true)?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    // Ends when `send` is dropped (or the server closes the connection).
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

/// Sends `req` on `send` and reads the whole response.
async fn call(
    send: &mut SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes)> {
    let exchange = async {
        send.ready().await?;
        let resp = send.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok::<_, anyhow::Error>((status, body))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| anyhow!("no response within {REQUEST_TIMEOUT:?}"))?
}

/// Calls `operation` and returns the response body, failing unless the status is 200.
async fn call_ok(
    send: &mut SendRequest<Full<Bytes>>,
    signer: &Signer,
    operation: &str,
    body: serde_json::Value,
) -> Result<serde_json::Value> {
    let req = signer.request(operation, &Bytes::from(body.to_string()))?;
    let (status, resp) = call(send, req).await?;
    if status != StatusCode::OK {
        bail!(
            "{operation} answered {status}: {}",
            String::from_utf8_lossy(&resp)
        );
    }
    Ok(serde_json::from_slice(&resp)?)
}

/// What the connections to one server measured.
struct Load {
    /// Latencies (microseconds) of the responses completed inside the window, sorted.
    latencies_us: Vec<u32>,
    window: Duration,
}

impl Load {
    fn rate(&self) -> f64 {
        self.latencies_us.len() as f64 / self.window.as_secs_f64()
    }

    /// The `q` quantile (nearest rank), in microseconds.
    fn quantile(&self, q: f64) -> f64 {
        let n = self.latencies_us.len();
        let rank = ((n as f64 * q).ceil() as usize).clamp(1, n.max(1));
        self.latencies_us
            .get(rank - 1)
            .map_or(0.0, |v| f64::from(*v))
    }
}

/// Drives `addr` with [`CONNECTIONS`] connections sending `body` as Encrypt requests for
/// `warmup` (not counted) and then `window`.
async fn drive(
    addr: SocketAddr,
    signer: Arc<Signer>,
    body: Bytes,
    warmup: Duration,
    window: Duration,
) -> Result<Load> {
    let start = Instant::now() + warmup;
    let end = start + window;
    let mut tasks = JoinSet::new();
    for _ in 0..CONNECTIONS {
        let (signer, body) = (signer.clone(), body.clone());
        tasks.spawn(async move {
            let mut send = connect(addr).await?;
            let mut latencies = Vec::new();
            for _ in 0..MAX_REQUESTS_PER_CONNECTION {
                let req = signer.request("Encrypt", &body)?;
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let (status, resp) = call(&mut send, req).await?;
                let done = Instant::now();
                if status != StatusCode::OK {
                    bail!(
                        "Encrypt answered {status}: {}",
                        String::from_utf8_lossy(&resp)
                    );
                }
                if done >= start && done <= end {
                    let us = done.duration_since(sent).as_micros();
                    latencies.push(u32::try_from(us).unwrap_or(u32::MAX));
                }
            }
            Ok::<_, anyhow::Error>(latencies)
        });
    }
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r??);
    }
    if all.is_empty() {
        bail!("no request to {addr} completed in the {window:?} window");
    }
    all.sort_unstable();
    Ok(Load {
        latencies_us: all,
        window,
    })
}

/// A canned response: the body and headers of a real Encrypt response.
struct Canned {
    body: Bytes,
    content_type: HeaderValue,
    request_id: HeaderValue,
}

/// The bare server's only handler: the request body is read (as any server must), the
/// canned response returned.
async fn bare(State(c): State<Arc<Canned>>, _body: Bytes) -> Response {
    let mut r = (StatusCode::OK, c.body.clone()).into_response();
    let h = r.headers_mut();
    h.insert("content-type", c.content_type.clone());
    h.insert("x-amzn-requestid", c.request_id.clone());
    r
}

/// The KMS on a fresh keystore in `dir`, with a user; returns its access key id and secret.
fn kms_in(dir: &std::path::Path) -> Result<(Arc<Kms>, String, String)> {
    let store = Arc::new(SqliteKeystore::open(&dir.join("keystore.db"))?);
    let master = Arc::new(LocalMasterKey::new(&Key256::generate()?, "bench".into())?);
    let settings = KeyringSettings {
        keyring: KMS_KEYRING.to_string(),
        ..KeyringSettings::new(DataMethod::default(), DEFAULT_ROTATION_PERIOD)
    };
    let clock = Arc::new(SystemClock);
    let keyring = Keyring::init(store.clone(), master, settings, clock.clone())?;
    let store: Arc<dyn Store> = store;
    let id = Identity {
        region: kura_server::DEFAULT_REGION.into(),
        account: kura_server::DEFAULT_ACCOUNT.into(),
    };
    let kms = Kms::new(store, keyring, id, clock);
    let user = kms.create_user("bench")?;
    let secret = user.secret_access_key.to_string();
    Ok((Arc::new(kms), user.user.access_key_id, secret))
}

async fn shutdown(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

pub(crate) fn run(cli: &Cli, a: &BenchArgs) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (kms, akid, secret) = kms_in(dir.path())?;
    let (window, warmup) = if a.quick {
        (Duration::from_secs(2), Duration::from_millis(250))
    } else {
        (Duration::from_secs(10), Duration::from_secs(1))
    };
    // The servers run on a runtime of their own, as they would in their own process.
    let servers = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-server")
        .build()
        .context("cannot start the async runtime")?;
    let client = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-client")
        .build()
        .context("cannot start the async runtime")?;
    let (stop, stopped) = watch::channel(false);
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));

    let kura_listener = servers.block_on(TcpListener::bind(loopback))?;
    let kura_addr = kura_listener.local_addr()?;
    let kura_server = servers.spawn(kura_server::http::serve(
        kms.clone(),
        kura_listener,
        shutdown(stopped.clone()),
    ));
    let bare_listener = servers.block_on(TcpListener::bind(loopback))?;
    let bare_addr = bare_listener.local_addr()?;

    let result = client.block_on(async {
        let kura_signer = Arc::new(Signer::new(kura_addr, &akid, &secret));
        let mut send = connect(kura_addr).await?;
        let key = call_ok(
            &mut send,
            &kura_signer,
            "CreateKey",
            serde_json::json!({ "Description": "kura bench" }),
        )
        .await?;
        let key_id = key["KeyMetadata"]["KeyId"]
            .as_str()
            .ok_or_else(|| anyhow!("CreateKey returned no KeyId: {key}"))?
            .to_string();
        let mut plaintext = [0u8; PLAINTEXT_BYTES];
        kura_crypto::rng::fill(&mut plaintext)?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let body = Bytes::from(
            serde_json::json!({ "KeyId": key_id, "Plaintext": b64.encode(plaintext) }).to_string(),
        );

        // One real Encrypt: checked to decrypt, and canned for the bare server.
        let (status, sample) = call(&mut send, kura_signer.request("Encrypt", &body)?).await?;
        if status != StatusCode::OK {
            bail!(
                "Encrypt answered {status}: {}",
                String::from_utf8_lossy(&sample)
            );
        }
        let enc: serde_json::Value = serde_json::from_slice(&sample)?;
        let dec = call_ok(
            &mut send,
            &kura_signer,
            "Decrypt",
            serde_json::json!({ "CiphertextBlob": enc["CiphertextBlob"] }),
        )
        .await?;
        if dec["Plaintext"].as_str() != Some(b64.encode(plaintext).as_str()) {
            bail!("the benchmark's Encrypt response does not decrypt to its plaintext");
        }
        drop(send);
        let canned = Arc::new(Canned {
            body: sample.clone(),
            content_type: HeaderValue::from_static(CONTENT_TYPE),
            // The length of a real request id (a UUID).
            request_id: HeaderValue::from_static("00000000-0000-4000-8000-000000000000"),
        });
        let app = Router::new().route("/", post(bare)).with_state(canned);
        let bare_server = servers.spawn(
            axum::serve(bare_listener, app)
                .with_graceful_shutdown(shutdown(stopped.clone()))
                .into_future(),
        );

        let kura = drive(kura_addr, kura_signer, body.clone(), warmup, window).await?;
        let bare_signer = Arc::new(Signer::new(bare_addr, &akid, &secret));
        let raw = drive(bare_addr, bare_signer, body, warmup, window).await?;
        Ok::<_, anyhow::Error>((kura, raw, sample.len(), bare_server))
    });
    let _ = stop.send(true);
    let outcome = result.map(|(kura, raw, response_bytes, bare_server)| {
        // Every client connection is closed by now: the servers stop at once.
        let _ = servers.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), async {
                let _ = kura_server.await;
                let _ = bare_server.await;
            })
            .await
        });
        (kura, raw, response_bytes)
    });
    client.shutdown_timeout(Duration::from_secs(1));
    servers.shutdown_timeout(Duration::from_secs(1));
    drop(kms);
    let (kura, raw, response_bytes) = outcome?;
    dir.close()?;

    let row = |name, unit, k: f64, r: f64| Row {
        name,
        kura: k,
        raw: r,
        unit,
        ratio: k / r,
    };
    let report = Report {
        quick: a.quick,
        mode: "server",
        connections: CONNECTIONS,
        seconds_each: window.as_secs_f64(),
        plaintext_bytes: PLAINTEXT_BYTES,
        response_bytes,
        requests: Requests {
            kura: kura.latencies_us.len() as u64,
            raw: raw.latencies_us.len() as u64,
        },
        results: vec![
            row("Encrypt 256 B over HTTP", "req/s", kura.rate(), raw.rate()),
            row(
                "Encrypt p50 latency",
                "µs",
                kura.quantile(0.50),
                raw.quantile(0.50),
            ),
            row(
                "Encrypt p99 latency",
                "µs",
                kura.quantile(0.99),
                raw.quantile(0.99),
            ),
        ],
    };
    emit(cli, &report, || {
        format!(
            "{}\n{} keep-alive connections, {} s per server, {} B plaintext, {} B responses; \
             raw: a bare HTTP server answering with a canned Encrypt response",
            table(&report.results, "bare HTTP"),
            report.connections,
            report.seconds_each,
            report.plaintext_bytes,
            report.response_bytes
        )
    })
}
