//! Load benchmarks: Parley in-process, a load generator beside it in the same process (so the
//! numbers include the generator's CPU, as on a real 2-core box), SQLite and, when
//! `TEST_POSTGRES_URL` is set, PostgreSQL.
//!
//! Scenarios:
//! - `api`: authenticated `GET /api/v1/auth/me` with an API token (token hash lookup, tenant
//!   scope, user read): the fixed cost every management request pays.
//!
//! Each scenario runs closed-loop at saturation (N concurrent clients, as fast as answers come)
//! for a fixed time and reports throughput and latency percentiles.
//! Run with `make bench`; record results in BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use base64::Engine;
use parley::config::{DatabaseUrl, Settings};
use parley::startup::Application;
use secrecy::SecretString;

const DURATION: Duration = Duration::from_secs(10);
const CLIENTS: usize = 32;

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
    let mut s = Settings::defaults().unwrap();
    s.listen = "127.0.0.1:0".parse().unwrap();
    s.database = database;
    s.data_dir = dir.join("data");
    s.master_key = Some(key());
    s.jwt_secret = Some(key());
    s.log_level = "warn".into();
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
        if let Ok(admin) = std::env::var("TEST_POSTGRES_URL") {
            // A database of its own, so the benchmark never touches anybody's data.
            use sqlx::Connection;
            let name = format!("parley_bench_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .unwrap();
            let mut url = url::Url::parse(&admin).unwrap();
            url.set_path(&name);
            backends.push((
                "postgres",
                DatabaseUrl::Postgres(SecretString::from(url.to_string())),
            ));
        }
        println!(
            "parley load benchmarks: {CLIENTS} clients, {} s per scenario, release build",
            DURATION.as_secs()
        );
        for (label, db) in backends {
            let (base, _stop) = start(db, dir.path()).await;
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(CLIENTS)
                .build()
                .unwrap();
            let token = api_token(&client, &base).await;
            let url = format!("{base}/api/v1/auth/me");
            saturate(format!("api auth/me [{label}]"), client, url, token)
                .await
                .print();
        }
    });
}
