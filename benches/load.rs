//! Load benchmarks: Parley in-process, a load generator beside it in the same process (so the
//! numbers include the generator's CPU, as on a real 2-core box), SQLite and, when
//! `TEST_POSTGRES_URL` is set, PostgreSQL.
//!
//! Scenarios:
//! - `api`: authenticated `GET /api/v1/auth/me` with an API token (token hash lookup, tenant
//!   scope, user read): the fixed cost every management request pays.
//! - `webhook saturation`: signed Cloud API webhooks, one text message each from 1,000 different
//!   senders, closed-loop (N clients, each sending as soon as its last one was acknowledged).
//!   Every 200 means the message and its job are committed.
//! - `webhook 1000/s`: the same webhooks open-loop at a fixed 1,000 per second. Latency is
//!   measured from when each request was due, not when it was sent, so a stall counts against
//!   every request it delays.
//!
//! Each scenario reports throughput and latency percentiles.
//! Run with `make bench`; record results in BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use parley::config::{DatabaseUrl, Settings};
use parley::startup::Application;
use secrecy::SecretString;

const DURATION: Duration = Duration::from_secs(10);
const CLIENTS: usize = 32;
const WEBHOOK_CLIENTS: usize = 64;
const FIXED_RATE: u64 = 1000;
const APP_SECRET: &str = "bench-app-secret";

struct Report {
    name: String,
    done: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Report {
    fn print(&mut self) {
        self.latencies.sort();
        let pct = |p: f64| {
            let i = ((self.latencies.len() as f64 * p) as usize)
                .min(self.latencies.len().saturating_sub(1));
            self.latencies
                .get(i)
                .copied()
                .unwrap_or_default()
                .as_secs_f64()
                * 1000.0
        };
        println!(
            "{:<32} {:>9.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms   ({} requests in {:.1} s)",
            self.name,
            self.done as f64 / self.elapsed.as_secs_f64(),
            pct(0.50),
            pct(0.99),
            self.done,
            self.elapsed.as_secs_f64()
        );
    }
}

fn key() -> SecretString {
    let mut k = [0u8; 32];
    getrandom::fill(&mut k).unwrap();
    SecretString::from(base64::engine::general_purpose::STANDARD.encode(k))
}

async fn start(
    database: DatabaseUrl,
    dir: &std::path::Path,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    start_with(database, dir, |_| {}).await
}

async fn start_with(
    database: DatabaseUrl,
    dir: &std::path::Path,
    configure: impl FnOnce(&mut Settings),
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let mut s = Settings::defaults().unwrap();
    s.listen = "127.0.0.1:0".parse().unwrap();
    s.database = database;
    s.data_dir = dir.join("data");
    s.master_key = Some(key());
    s.jwt_secret = Some(key());
    s.log_level = "warn".into();
    // Ingestion is measured alone: the engine's workers run in `parley worker` processes in a
    // split deployment, and here they would compete for the same two cores.
    s.run_workers = false;
    configure(&mut s);
    let app = Application::build(s).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    (base, tx)
}

async fn api_token(client: &reqwest::Client, base: &str) -> String {
    let email = format!("bench-{}@example.com", uuid::Uuid::new_v4().simple());
    let res: serde_json::Value = client
        .post(format!("{base}/api/v1/auth/signup"))
        .json(&serde_json::json!({"email": email, "password": "bench password", "name": "Bench"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let session = res["token"].as_str().unwrap();
    let res: serde_json::Value = client
        .post(format!("{base}/api/v1/token/create"))
        .bearer_auth(session)
        .json(&serde_json::json!({"name": "bench"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    res["token"].as_str().unwrap().to_owned()
}

async fn saturate(name: String, client: reqwest::Client, url: String, token: String) -> Report {
    let stop = Instant::now() + DURATION;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < stop {
                let t = Instant::now();
                let res = client.get(&url).bearer_auth(&token).send().await.unwrap();
                assert_eq!(res.status(), 200);
                let _ = res.bytes().await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    Report {
        name,
        done: latencies.len(),
        elapsed: started.elapsed(),
        latencies,
    }
}

async fn webhook_integration(client: &reqwest::Client, base: &str, token: &str) -> String {
    let res: serde_json::Value = client
        .post(format!("{base}/api/v1/integration/whatsapp/create"))
        .bearer_auth(token)
        .json(
            &serde_json::json!({"name": "bench", "appSecret": APP_SECRET, "phoneNumberId": "1065"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    res["id"].as_str().unwrap().to_owned()
}

static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A signed webhook with a fresh wamid, from one of 1,000 senders.
fn webhook() -> (Vec<u8>, String) {
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let from = format!("4477009{:05}", n % 1000);
    let body = serde_json::json!({"object": "whatsapp_business_account", "entry": [{"id": "W", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100", "phone_number_id": "1065"},
        "contacts": [{"wa_id": from, "profile": {"name": "Load"}}],
        "messages": [{"from": from, "id": format!("wamid.bench.{n}"), "timestamp": "1700000000", "type": "text", "text": {"body": "hello, is the shop open today?"}}]
    }}]}]})
    .to_string()
    .into_bytes();
    let sig = parley::channels::whatsapp::signature::sign(APP_SECRET.as_bytes(), &body);
    (body, sig)
}

async fn send_webhook(client: &reqwest::Client, url: &str) {
    let (body, sig) = webhook();
    let res = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-hub-signature-256", sig)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let _ = res.bytes().await;
}

async fn webhook_saturation(name: String, client: reqwest::Client, url: String) -> Report {
    let stop = Instant::now() + DURATION;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..WEBHOOK_CLIENTS {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < stop {
                let t = Instant::now();
                send_webhook(&client, &url).await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    Report {
        name,
        done: latencies.len(),
        elapsed: started.elapsed(),
        latencies,
    }
}

async fn webhook_fixed_rate(name: String, client: reqwest::Client, url: String) -> Report {
    let total = FIXED_RATE * DURATION.as_secs();
    let interval = Duration::from_micros(1_000_000 / FIXED_RATE);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = started + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            send_webhook(&client, &url).await;
            due.elapsed()
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    for t in tasks {
        latencies.push(t.await.unwrap());
    }
    Report {
        name,
        done: latencies.len(),
        elapsed: started.elapsed(),
        latencies,
    }
}

/// When each reply text reached the mock Graph API.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

/// The newest user message's text in a Chat Completions request.
fn last_user_text(body: &serde_json::Value) -> String {
    body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// An instant model (OpenAI SSE that echoes the newest user message) and a Graph API that
/// accepts sends like Meta and notes when each text arrived, in one small actix server. They
/// keep nothing but the arrival times, so they cost the run little CPU and memory.
async fn start_mocks(arrivals: Arrivals) -> String {
    use actix_web::{App, HttpResponse, HttpServer, web};
    let chat = |body: web::Bytes| async move {
        let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let chunk = serde_json::json!({"choices": [{"index": 0, "delta": {"content": last_user_text(&req)}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 5}});
        HttpResponse::Ok()
            .content_type("text/event-stream")
            .body(format!("data: {chunk}\n\ndata: [DONE]\n\n"))
    };
    let graph = move |arrivals: web::Data<Arrivals>, body: web::Bytes| async move {
        let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if req["status"] == "read" {
            return HttpResponse::Ok().json(serde_json::json!({"success": true}));
        }
        if let Some(text) = req["text"]["body"].as_str() {
            let mut arrivals = arrivals.lock().unwrap();
            for part in text.split(" | ") {
                arrivals.insert(part.to_owned(), Instant::now());
            }
        }
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        HttpResponse::Ok().json(serde_json::json!({
            "messaging_product": "whatsapp", "messages": [{"id": format!("wamid.out.{n}")}]
        }))
    };
    let data = web::Data::new(arrivals);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/v1/chat/completions", web::post().to(chat))
            .route("/{version}/{phone}/messages", web::post().to(graph))
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .unwrap();
    let addr = server.addrs()[0];
    tokio::spawn(server.run());
    format!("http://{addr}")
}

/// `parley serve` in a process of its own, so its memory can be measured alone. Returns the
/// child and its port.
fn spawn_server(
    database_url: &str,
    dir: &std::path::Path,
    mocks: &str,
) -> (std::process::Child, u16) {
    use std::io::BufRead;
    let data = dir.join(format!("data-{}", uuid::Uuid::new_v4().simple()));
    // `PARLEY_BENCH_SERVER_LOG=debug,sqlx=debug` (say) keeps the server's log in
    // $TMPDIR/parley-bench-server.log, to see where its time goes.
    let log_to_file = std::env::var("PARLEY_BENCH_SERVER_LOG").ok();
    let log_level = log_to_file.as_deref().map_or_else(
        || "warn,parley::cli=info".to_owned(),
        |l| format!("{l},parley::cli=info"),
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_parley"))
        .env_clear()
        .envs([
            ("PARLEY_DATABASE_URL", database_url),
            ("PARLEY_LISTEN", "127.0.0.1:0"),
            ("PARLEY_DATA_DIR", data.to_str().unwrap()),
            ("PARLEY_LOG_FORMAT", "json"),
            ("PARLEY_LOG_LEVEL", log_level.as_str()),
            ("PARLEY_WHATSAPP_GRAPH_URL", mocks),
            ("PARLEY_COALESCE_WINDOW_MS", "0"),
            ("PARLEY_WORKER_CONCURRENCY", "128"),
        ])
        // `PARLEY_BENCH_SERVER_ENV="PARLEY_X=1 PARLEY_Y=2"` tries server settings.
        .envs(
            std::env::var("PARLEY_BENCH_SERVER_ENV")
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|kv| kv.split_once('=')),
        )
        .arg("serve")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let port = loop {
        let line = lines.next().expect("the server logs its port").unwrap();
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
            && v["fields"]["message"] == "listening"
        {
            break v["fields"]["port"].as_u64().unwrap() as u16;
        }
    };
    // Keep draining its log so it never blocks on a full pipe.
    std::thread::spawn(move || {
        use std::io::Write;
        let mut file = log_to_file.map(|_| {
            std::fs::File::create(std::env::temp_dir().join("parley-bench-server.log")).unwrap()
        });
        for line in lines.map_while(Result::ok) {
            if let Some(f) = file.as_mut() {
                let _ = writeln!(f, "{line}");
            } else if line.contains("\"ERROR\"") {
                eprintln!("server: {line}");
            }
        }
    });
    (child, port)
}

async fn pg_database() -> (String, String) {
    use sqlx::Connection;
    let admin = std::env::var("TEST_POSTGRES_URL").unwrap();
    let name = format!("parley_bench_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let mut url = url::Url::parse(&admin).unwrap();
    url.set_path(&name);
    // TLS to a database on the same machine protects nothing and cost a fifth of PostgreSQL's
    // CPU per turn (and more of Parley's): a same-host deployment connects without it, as here.
    // A URL that names its own `sslmode` keeps it.
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    if loopback && !url.query_pairs().any(|(k, _)| k == "sslmode") {
        url.query_pairs_mut().append_pair("sslmode", "disable");
    }
    (url.to_string(), name)
}

async fn drop_pg_database(name: &str) {
    use sqlx::Connection;
    // `PARLEY_BENCH_KEEP_DB=1` keeps it, to look at plans over the data a run left.
    if std::env::var_os("PARLEY_BENCH_KEEP_DB").is_some() {
        println!("    kept database {name}");
        return;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    if let Ok(admin) = std::env::var("TEST_POSTGRES_URL")
        && let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await
    {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await;
    }
}

/// Resident memory of a process now and at its peak (VmRSS, VmHWM), in MB.
fn rss_mb(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU time (user + system) a process has used so far, in seconds.
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name and state.
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU time used so far by every PostgreSQL server process on the machine, in seconds.
fn postgres_cpu_secs() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|pid| pid.chars().all(|c| c.is_ascii_digit()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .map(|pid| cpu_secs(&pid))
        .sum()
}

/// CPU used by the server, this process (load generator and mocks) and PostgreSQL.
#[derive(Clone, Copy)]
struct Cpu {
    server: f64,
    bench: f64,
    postgres: f64,
}

impl Cpu {
    fn now(server: u32) -> Self {
        Self {
            server: cpu_secs(&server.to_string()),
            bench: cpu_secs("self"),
            postgres: postgres_cpu_secs(),
        }
    }

    /// Milliseconds of CPU per turn since `before`, by party.
    fn per_turn(self, before: Self, turns: usize) -> String {
        let ms = |a: f64, b: f64| (a - b) * 1000.0 / turns as f64;
        format!(
            "CPU per turn: server {:.2} ms, load generator + mocks {:.2} ms, PostgreSQL {:.2} ms",
            ms(self.server, before.server),
            ms(self.bench, before.bench),
            ms(self.postgres, before.postgres)
        )
    }
}

fn text_hook(wamid: &str, from: &str, text: &str) -> (Vec<u8>, String) {
    let body = serde_json::json!({"object": "whatsapp_business_account", "entry": [{"id": "W", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100", "phone_number_id": "1065"},
        "contacts": [{"wa_id": from, "profile": {"name": "Load"}}],
        "messages": [{"from": from, "id": wamid, "timestamp": "1700000000", "type": "text", "text": {"body": text}}]
    }}]}]})
    .to_string()
    .into_bytes();
    let sig = parley::channels::whatsapp::signature::sign(APP_SECRET.as_bytes(), &body);
    (body, sig)
}

async fn wait_answered(arrivals: &Arrivals, texts: &[String], limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        let done = {
            let a = arrivals.lock().unwrap();
            texts.iter().all(|t| a.contains_key(t))
        };
        if done {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// The engine end to end with an instant model: turns per second at saturation, the latency
/// Parley adds (webhook sent → reply at Graph) at 200 turns/s, and RSS with 10,000 sessions.
async fn engine_bench(label: &str, database_url: &str, dir: &std::path::Path) {
    let arrivals: Arrivals = Arc::new(Mutex::new(HashMap::new()));
    let mocks = start_mocks(arrivals.clone()).await;
    let (mut server, port) = spawn_server(database_url, dir, &mocks);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let token = api_token(&client, &base).await;
    let post = |path: &str, body: serde_json::Value| {
        client
            .post(format!("{base}{path}"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let provider: serde_json::Value = post(
        "/api/v1/provider/create",
        serde_json::json!({"name": "m", "type": "openai", "baseUrl": format!("{mocks}/v1")}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let bot: serde_json::Value = post(
        "/api/v1/bot/create",
        serde_json::json!({"name": "b", "model": "gpt-4o-mini", "providerId": provider["id"]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let hook: serde_json::Value = post("/api/v1/integration/whatsapp/create", serde_json::json!({
        "appSecret": APP_SECRET, "phoneNumberId": "1065", "accessToken": "EAAG", "botId": bot["id"]}))
        .await.unwrap().json().await.unwrap();
    let url = format!(
        "{base}/api/v1/integration/whatsapp/{}/callback",
        hook["id"].as_str().unwrap()
    );
    let send = |wamid: String, from: String, text: String| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let (body, sig) = text_hook(&wamid, &from, &text);
            let res = client
                .post(&url)
                .header("content-type", "application/json")
                .header("x-hub-signature-256", sig)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
        }
    };

    // Saturation: 4,000 messages from 4,000 contacts, one turn each, as fast as they go.
    let n = 4000;
    let texts: Vec<String> = (0..n).map(|i| format!("{label}-sat-{i}")).collect();
    let started = Instant::now();
    let cpu_before = Cpu::now(server.id());
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    for (i, t) in texts.iter().enumerate() {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let fut = send(format!("wamid.{t}"), format!("4470{i:07}"), t.clone());
        tokio::spawn(async move {
            fut.await;
            drop(permit);
        });
    }
    let answered = wait_answered(&arrivals, &texts, Duration::from_secs(300)).await;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{:<32} {:>9.0} turns/s ({} turns in {:.1} s{})",
        format!("engine saturation [{label}]"),
        n as f64 / secs,
        n,
        secs,
        if answered { "" } else { ", NOT ALL ANSWERED" }
    );
    println!("    {}", Cpu::now(server.id()).per_turn(cpu_before, n));

    // Added latency at 200 turns/s: open loop, 2,000 messages from new contacts.
    let m = 2000u32;
    let texts: Vec<String> = (0..m).map(|i| format!("{label}-lat-{i}")).collect();
    let begin = Instant::now();
    let mut due_at = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        let due = begin + Duration::from_millis(5) * i as u32;
        tokio::time::sleep_until(due.into()).await;
        due_at.push(due);
        tokio::spawn(send(format!("wamid.{t}"), format!("4471{i:07}"), t.clone()));
    }
    wait_answered(&arrivals, &texts, Duration::from_secs(120)).await;
    let mut lat: Vec<Duration> = {
        let a = arrivals.lock().unwrap();
        texts
            .iter()
            .zip(&due_at)
            .filter_map(|(t, d)| a.get(t).map(|at| at.duration_since(*d)))
            .collect()
    };
    // `PARLEY_BENCH_LATENCIES=FILE` writes each message's send offset and latency (ms), to
    // see when in the run the slow ones were.
    if let Ok(path) = std::env::var("PARLEY_BENCH_LATENCIES") {
        let a = arrivals.lock().unwrap();
        let rows: String = texts
            .iter()
            .zip(&due_at)
            .filter_map(|(t, d)| {
                let at = a.get(t)?;
                Some(format!(
                    "{:.1} {:.2}\n",
                    d.duration_since(begin).as_secs_f64() * 1000.0,
                    at.duration_since(*d).as_secs_f64() * 1000.0
                ))
            })
            .collect();
        std::fs::write(path, rows).unwrap();
    }
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1000.0
    };
    println!(
        "{:<32} p50 {:>7.2} ms   p99 {:>7.2} ms   ({} of {m} answered; model time ~0)",
        format!("engine added latency 200/s [{label}]"),
        pct(0.5),
        pct(0.99),
        lat.len()
    );

    // 10,000 open sessions.
    let k = 10_000;
    let texts: Vec<String> = (0..k).map(|i| format!("{label}-ses-{i}")).collect();
    for (i, t) in texts.iter().enumerate() {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let fut = send(format!("wamid.{t}"), format!("4472{i:07}"), t.clone());
        tokio::spawn(async move {
            fut.await;
            drop(permit);
        });
    }
    wait_answered(&arrivals, &texts, Duration::from_secs(600)).await;
    let (rss, peak) = rss_mb(server.id());
    println!(
        "{:<32} {:>9.1} MB RSS, peak {:.1} MB (the server process alone)",
        format!("engine 10,000+ sessions [{label}]"),
        rss,
        peak
    );
    let _ = server.kill();
    let _ = server.wait();
}

/// The management API and webhook ingestion, with Parley in this process.
async fn ingest_benches(
    label: &str,
    db: DatabaseUrl,
    dir: &std::path::Path,
    wanted: &dyn Fn(&str) -> bool,
) {
    let (base, _stop) = start(db, dir).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .unwrap();
    let token = api_token(&client, &base).await;
    if wanted("api") {
        let url = format!("{base}/api/v1/auth/me");
        saturate(
            format!("api auth/me [{label}]"),
            client.clone(),
            url,
            token.clone(),
        )
        .await
        .print();
    }
    if wanted("webhook") {
        let hook = webhook_integration(&client, &base, &token).await;
        let url = format!("{base}/api/v1/integration/whatsapp/{hook}/callback");
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(WEBHOOK_CLIENTS * 4)
            .build()
            .unwrap();
        webhook_saturation(
            format!("webhook saturation [{label}]"),
            client.clone(),
            url.clone(),
        )
        .await
        .print();
        webhook_fixed_rate(format!("webhook {FIXED_RATE}/s [{label}]"), client, url)
            .await
            .print();
    }
}

fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut backends: Vec<(&str, DatabaseUrl)> = Vec::new();
        let dir = tempfile::tempdir().unwrap();
        backends.push(("sqlite", DatabaseUrl::Sqlite(dir.path().join("bench.db"))));
        let mut pg_name = None;
        if std::env::var("TEST_POSTGRES_URL").is_ok() {
            // A database of its own, so the benchmark never touches anybody's data.
            let (url, name) = pg_database().await;
            pg_name = Some(name);
            backends.push(("postgres", DatabaseUrl::Postgres(SecretString::from(url))));
        }
        println!(
            "parley load benchmarks: {CLIENTS} clients, {} s per scenario, release build",
            DURATION.as_secs()
        );
        // `PARLEY_BENCH=engine` (or `api`, `webhook`, comma-separated) runs only those.
        let only = std::env::var("PARLEY_BENCH").unwrap_or_default();
        let wanted = |name: &str| only.is_empty() || only.split(',').any(|o| o.trim() == name);
        // `PARLEY_BENCH_DB=postgres` (or `sqlite`) runs on that database only.
        let db_only = std::env::var("PARLEY_BENCH_DB").unwrap_or_default();
        for (label, db) in backends {
            if !db_only.is_empty() && db_only != label {
                continue;
            }
            if wanted("api") || wanted("webhook") {
                ingest_benches(label, db.clone(), dir.path(), &wanted).await;
            }
            if wanted("engine") {
                // A database of its own: the webhook runs left tens of thousands of jobs queued.
                let (engine_url, engine_pg) = match db {
                    DatabaseUrl::Sqlite(_) => (
                        format!("sqlite://{}", dir.path().join("engine.db").display()),
                        None,
                    ),
                    DatabaseUrl::Postgres(_) => {
                        let (url, name) = pg_database().await;
                        (url, Some(name))
                    }
                };
                engine_bench(label, &engine_url, dir.path()).await;
                if let Some(name) = engine_pg {
                    drop_pg_database(&name).await;
                }
            }
        }
        // Leave no benchmark database behind.
        if let Some(name) = pg_name {
            drop_pg_database(&name).await;
        }
    });
}
