//! Load benchmark of the emulator on loopback.
//!
//! ```text
//! cargo run --release -p agentlattice-emulator --example load -- --concurrency 32 --seconds 10
//! ```
//!
//! Starts an emulator in process (or targets `--url` with `AL_SERVICE_KEY` from the environment),
//! then runs, each for `--seconds` with `--concurrency` workers over keep-alive connections:
//! 1. registrations (`POST /api/agents/register`, a new name each time),
//! 2. simple GETs (`GET /api/v1/whoami` with an agent key),
//! 3. provisioning reads (`GET /api/agents/{id}` with the service key).
//!
//! Client and server share the machine's cores, so the figures are a lower bound for the server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use agentlattice_emulator::{Emulator, EmulatorConfig};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

#[derive(Debug, Parser)]
struct Args {
    /// Parallel workers (each with its own keep-alive connection).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Duration of each phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Target an already running emulator (service key in AL_SERVICE_KEY) instead of one in process.
    #[arg(long)]
    url: Option<String>,
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

#[derive(Clone, Copy)]
enum Phase {
    Register,
    Whoami,
    GetAgent,
}

struct Target {
    base: String,
    service_key: String,
    agent_key: String,
    agent_id: String,
}

async fn call(
    client: &HttpClient,
    method: http::Method,
    url: String,
    token: &str,
    body: Option<Vec<u8>>,
) -> u16 {
    let mut b = http::Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", format!("Bearer {token}"));
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    let Ok(req) = b.body(Full::new(Bytes::from(body.unwrap_or_default()))) else {
        return 0;
    };
    match client.request(req).await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let _ = resp.into_body().collect().await;
            status
        }
        Err(_) => 0,
    }
}

struct Outcome {
    ok: u64,
    failed: u64,
    latencies_us: Vec<u32>,
}

async fn run_phase(
    client: HttpClient,
    target: Arc<Target>,
    phase: Phase,
    args: &Args,
    run: u32,
) -> (Outcome, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..args.concurrency {
        let client = client.clone();
        let target = target.clone();
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let mut out = Outcome {
                ok: 0,
                failed: 0,
                latencies_us: Vec::new(),
            };
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let (status, expect) = match phase {
                    Phase::Register => {
                        let body = format!(
                            r#"{{"name":"bench-{run}-{w}-{i}","capabilities":["bench.run"]}}"#
                        );
                        let url = format!("{}/api/agents/register", target.base);
                        (
                            call(
                                &client,
                                http::Method::POST,
                                url,
                                &target.service_key,
                                Some(body.into_bytes()),
                            )
                            .await,
                            201,
                        )
                    }
                    Phase::Whoami => {
                        let url = format!("{}/api/v1/whoami", target.base);
                        (
                            call(&client, http::Method::GET, url, &target.agent_key, None).await,
                            200,
                        )
                    }
                    Phase::GetAgent => {
                        let url = format!("{}/api/agents/{}", target.base, target.agent_id);
                        (
                            call(&client, http::Method::GET, url, &target.service_key, None).await,
                            200,
                        )
                    }
                };
                out.latencies_us
                    .push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                if status == expect {
                    out.ok += 1;
                } else {
                    out.failed += 1;
                }
                i += 1;
            }
            out
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = Outcome {
        ok: 0,
        failed: 0,
        latencies_us: Vec::new(),
    };
    for w in workers {
        if let Ok(o) = w.await {
            total.ok += o.ok;
            total.failed += o.failed;
            total.latencies_us.extend(o.latencies_us);
        }
    }
    (total, started.elapsed())
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[idx]) / 1000.0
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(args.concurrency * 2)
        .build_http();

    let (emu, base, service_key) = match &args.url {
        Some(url) => {
            let key = std::env::var("AL_SERVICE_KEY").expect("AL_SERVICE_KEY for --url");
            (None, url.trim_end_matches('/').to_owned(), key)
        }
        None => {
            let emu = Emulator::start(EmulatorConfig::default())
                .await
                .expect("emulator starts");
            let key = emu.create_service_key("bench").api_key;
            let base = emu.base_url();
            (Some(emu), base, key)
        }
    };

    // One agent for the read phases.
    let run = std::process::id();
    let body = format!(r#"{{"name":"bench-reader-{run}","capabilities":["bench.run"]}}"#);
    let req = http::Request::post(format!("{base}/api/agents/register"))
        .header("authorization", format!("Bearer {service_key}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let resp = client
        .request(req)
        .await
        .expect("register the reader agent");
    assert_eq!(resp.status(), 201, "register the reader agent");
    let v: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.expect("body").to_bytes())
            .expect("json");
    let target = Arc::new(Target {
        base,
        service_key,
        agent_key: v["api_key"].as_str().expect("api_key").to_owned(),
        agent_id: v["id"].as_str().expect("id").to_owned(),
    });

    println!(
        "agentlattice-emulator bench: concurrency {}, {} s per phase, {} CPU(s), target {}",
        args.concurrency,
        args.seconds,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if emu.is_some() {
            "in-process emulator"
        } else {
            target.base.as_str()
        }
    );
    println!(
        "{:<34} {:>10} {:>9} {:>9} {:>9} {:>8}",
        "phase", "requests/s", "p50 ms", "p99 ms", "max ms", "errors"
    );
    for (name, phase) in [
        ("register (POST, new agent + key)", Phase::Register),
        ("whoami (GET, agent key)", Phase::Whoami),
        ("get agent (GET, service key)", Phase::GetAgent),
    ] {
        let (mut out, took) = run_phase(client.clone(), target.clone(), phase, &args, run).await;
        out.latencies_us.sort_unstable();
        let rps = out.ok as f64 / took.as_secs_f64();
        println!(
            "{:<34} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>8}",
            name,
            rps,
            percentile(&out.latencies_us, 0.50),
            percentile(&out.latencies_us, 0.99),
            percentile(&out.latencies_us, 1.0),
            out.failed
        );
    }
    if let Some(emu) = emu {
        let snap = emu.snapshot();
        println!("agents registered: {}", snap.agents.len());
        emu.shutdown().await;
    }
}
