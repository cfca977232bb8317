//! Secrets at rest and in logs.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{
    TestDb, parley_command, settings_env, spawn_app, spawn_app_on, test_settings,
};

const ACCESS_TOKEN: &str = "EAAGsecretACCESStoken0987654321";
const APP_SECRET: &str = "appSECRETvalue1234567890abcdef";
const API_KEY: &str = "sk-proj-SECRETapiKEY1234567890";

#[tokio::test]
async fn secrets_are_encrypted_in_the_database_rows() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    app.post(
        "/api/v1/provider/create",
        &ana.token,
        &json!({"name": "P", "type": "openai", "apiKey": API_KEY}),
    )
    .await;
    app.create_integration(
        &ana,
        json!({"accessToken": ACCESS_TOKEN, "appSecret": APP_SECRET}),
    )
    .await;

    // Read the raw rows, every column as text, the way an attacker with a dump would.
    let db = app.state.store().db();
    let backend = db.get_database_backend();
    for (table, cols) in [
        ("provider", vec!["api_key"]),
        ("whatsapp_integration", vec!["access_token", "app_secret"]),
    ] {
        let sql = format!("SELECT * FROM {table}");
        let rows = db
            .query_all_raw(Statement::from_string(backend, sql))
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        for col in cols {
            let raw: String = rows[0].try_get("", col).unwrap();
            assert!(raw.starts_with("v1."), "{table}.{col} is not sealed: {raw}");
            for secret in [ACCESS_TOKEN, APP_SECRET, API_KEY] {
                assert!(
                    !raw.contains(secret),
                    "{table}.{col} holds a plaintext secret"
                );
            }
        }
        let dump = format!("{:?}", rows[0]);
        for secret in [ACCESS_TOKEN, APP_SECRET, API_KEY] {
            assert!(!dump.contains(secret), "{table} holds a plaintext secret");
        }
    }
}

#[tokio::test]
async fn keys_rotate_re_encrypts_every_secret_under_a_new_key() {
    use secrecy::ExposeSecret;
    let db = std::sync::Arc::new(TestDb::new().await);
    let settings = test_settings(&db);
    let app = spawn_app_on(db.clone(), settings.clone()).await;
    let ana = app.signup("Ana").await;
    let wa = app
        .create_integration(
            &ana,
            json!({"accessToken": ACCESS_TOKEN, "appSecret": APP_SECRET}),
        )
        .await;
    let old_kid = app.state.vault().current_key_id().to_owned();
    app.stop().await.unwrap();

    let out = parley_command(&settings_env(&settings))
        .args(["keys", "rotate"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new_key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(String::from_utf8_lossy(&out.stderr).contains("re-encrypted 2 secrets"));

    let mut rotated = settings.clone();
    rotated.master_key = Some(new_key.into());
    rotated.master_key_previous = None;
    let app = spawn_app_on(db.clone(), rotated).await;
    assert_ne!(app.state.vault().current_key_id(), old_kid);
    use sea_orm::EntityTrait;
    let row = parley::store::entities::whatsapp_integration::Entity::find_by_id(wa.clone())
        .one(app.state.store().db())
        .await
        .unwrap()
        .unwrap();
    let sealed = row.access_token.clone().unwrap();
    assert_eq!(
        parley::crypto::Vault::sealed_key_id(&sealed),
        Some(app.state.vault().current_key_id())
    );
    let ctx = parley::integrations::whatsapp::access_token_context(&row);
    assert_eq!(
        app.state
            .vault()
            .open(&sealed, &ctx)
            .unwrap()
            .expose_secret(),
        ACCESS_TOKEN
    );
    // And the API still works on them.
    let got = app
        .fetch_json(
            &format!("/api/v1/integration/whatsapp/{wa}/fetch"),
            &ana.token,
        )
        .await;
    assert_eq!(got["accessToken"], "********");
}

/// Runs a real server at trace level through flows that handle every kind of secret, and
/// checks that none of them appears anywhere in what it logged.
#[tokio::test]
async fn no_secret_appears_in_the_logs_even_at_trace_level() {
    let graph = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(401).set_body_string(crate::helpers::fixture(
                "graph/error_190_expired_token.json",
            )),
        )
        .mount(&graph)
        .await;
    let db = TestDb::new().await;
    let settings = test_settings(&db);
    let mut env = settings_env(&settings);
    env.push(("PARLEY_LISTEN".into(), "127.0.0.1:0".into()));
    env.push(("PARLEY_LOG_LEVEL".into(), "trace".into()));
    env.push(("PARLEY_WHATSAPP_GRAPH_URL".into(), graph.uri()));
    env.push((
        "PARLEY_OPENAI_API_KEY".into(),
        "sk-SERVERdefaultKEY000111".into(),
    ));
    let mut child = parley_command(&env)
        .arg("serve")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let port = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("server starts");
        let port = serde_json::from_str::<Value>(&line)
            .ok()
            .filter(|v| v["fields"]["message"] == "listening")
            .and_then(|v| v["fields"]["port"].as_u64());
        log.push(line);
        if let Some(p) = port {
            break p;
        }
    };
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let password = "PASSWORDsecret-horse-battery";
    let email = "secret-owner@example.com";
    let signup: Value = client
        .post(format!("{base}/api/v1/auth/signup"))
        .json(&json!({"email": email, "password": password, "name": "S"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let session = signup["token"].as_str().unwrap().to_owned();
    let post = |path: &str, body: Value| {
        client
            .post(format!("{base}{path}"))
            .bearer_auth(&session)
            .json(&body)
            .send()
    };
    let api_token: Value = post("/api/v1/token/create", json!({"name": "t"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let api_token = api_token["token"].as_str().unwrap().to_owned();
    post(
        "/api/v1/provider/create",
        json!({"name": "P", "type": "openai", "apiKey": API_KEY}),
    )
    .await
    .unwrap();
    let wa: Value = post(
        "/api/v1/integration/whatsapp/create",
        json!({"phoneNumberId": "1065", "accessToken": ACCESS_TOKEN, "appSecret": APP_SECRET}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let wa = wa["id"].as_str().unwrap();
    post(
        &format!("/api/v1/integration/whatsapp/{wa}/setup"),
        json!({}),
    )
    .await
    .unwrap();
    post(
        &format!("/api/v1/integration/whatsapp/{wa}/update"),
        json!({"accessToken": "EAAGrotatedTOKEN55555"}),
    )
    .await
    .unwrap();
    client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": "WRONGpassword-guess"}))
        .send()
        .await
        .unwrap();
    client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    client
        .get(format!("{base}/api/v1/auth/me"))
        .bearer_auth(&api_token)
        .send()
        .await
        .unwrap();

    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let _ = child.wait();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
        log.push(line);
    }
    let all = log.join("\n");
    assert!(all.contains("request"), "the log was captured");
    let secrets = [
        password,
        "WRONGpassword-guess",
        &api_token,
        &session,
        ACCESS_TOKEN,
        "EAAGrotatedTOKEN55555",
        APP_SECRET,
        API_KEY,
        "sk-SERVERdefaultKEY000111",
    ];
    let mut keys: Vec<String> = vec![];
    for (k, v) in &env {
        if k == "PARLEY_MASTER_KEY" || k == "PARLEY_JWT_SECRET" {
            keys.push(v.clone());
        }
    }
    for secret in secrets
        .iter()
        .copied()
        .chain(keys.iter().map(String::as_str))
    {
        assert!(
            !all.contains(secret),
            "a secret leaked into the logs: {}…",
            &secret[..6]
        );
    }
}
