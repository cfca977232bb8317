//! Crash safety: a SIGKILL in the middle of a stream of webhooks loses nothing that was
//! acknowledged, and what was not acknowledged succeeds when Meta redelivers it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use parley::channels::whatsapp::signature::sign;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;

use crate::helpers::{TestDb, settings_env, spawn_app_on, test_settings};
use crate::process::{start_server, wait_with_timeout};
use crate::webhooks::SECRET;

fn webhook(wamid: &str, from: &str) -> Vec<u8> {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "W", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "1555", "phone_number_id": "1065"},
        "contacts": [{"wa_id": from, "profile": {"name": "S"}}],
        "messages": [{"from": from, "id": wamid, "timestamp": "1700000000", "type": "text", "text": {"body": wamid}}]
    }}]}]})
    .to_string()
    .into_bytes()
}

async fn scalar(store: &parley::store::Store, sql: &str) -> i64 {
    let db = store.db();
    db.query_one_raw(Statement::from_string(
        db.get_database_backend(),
        sql.to_owned(),
    ))
    .await
    .unwrap()
    .unwrap()
    .try_get_by_index::<i64>(0)
    .unwrap()
}

#[tokio::test]
async fn sigkill_mid_stream_loses_no_acknowledged_webhook_and_redelivery_completes_the_rest() {
    const TOTAL: usize = 400;
    let db = Arc::new(TestDb::new().await);
    let settings = test_settings(&db);
    let app = spawn_app_on(db.clone(), settings.clone()).await;
    let ana = app.signup("Ana").await;
    let id = app
        .create_integration(&ana, json!({"appSecret": SECRET, "phoneNumberId": "1065"}))
        .await;
    app.stop().await.unwrap();

    let env = settings_env(&settings);
    let (mut child, port, _, _logs) = start_server(&env, None);
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let client = reqwest::Client::new();
    let mut senders = Vec::new();
    for worker in 0..8 {
        let (client, acked, id) = (client.clone(), acked.clone(), id.clone());
        senders.push(tokio::spawn(async move {
            for i in (worker..TOTAL).step_by(8) {
                let wamid = format!("wamid.crash.{i}");
                let body = webhook(&wamid, &format!("4477009{:05}", i % 50));
                let res = client
                    .post(format!(
                        "http://127.0.0.1:{port}/api/v1/integration/whatsapp/{id}/callback"
                    ))
                    .header("x-hub-signature-256", sign(SECRET.as_bytes(), &body))
                    .body(body)
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status() == 200 => {
                        acked.lock().unwrap().insert(wamid);
                    }
                    // The server died mid-request: not acknowledged, Meta would retry.
                    _ => {}
                }
            }
        }));
    }
    // Kill it once a good part of the stream was acknowledged.
    loop {
        if acked.lock().unwrap().len() >= TOTAL / 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    std::process::Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    for s in senders {
        s.await.unwrap();
    }
    let _ = wait_with_timeout(&mut child, Duration::from_secs(10));
    let acked: HashSet<String> = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= TOTAL / 3 && acked.len() < TOTAL,
        "acked {}",
        acked.len()
    );

    // Every acknowledged message is stored exactly once, with exactly one job.
    let store = parley::store::Store::connect(&settings).await.unwrap();
    let jobs_table = match store.db().get_database_backend() {
        sea_orm::DatabaseBackend::Postgres => "apalis.jobs",
        _ => "Jobs",
    };
    for wamid in &acked {
        let n = scalar(
            &store,
            &format!("SELECT COUNT(*) FROM inbound_message WHERE wamid = '{wamid}'"),
        )
        .await;
        assert_eq!(n, 1, "{wamid} was acknowledged but stored {n} times");
    }
    let jobless = scalar(
        &store,
        &format!(
            "SELECT COUNT(*) FROM inbound_message i WHERE NOT EXISTS \
             (SELECT 1 FROM {jobs_table} j WHERE j.job_type = 'inbound' AND j.idempotency_key = i.id)"
        ),
    )
    .await;
    assert_eq!(jobless, 0, "every stored message has its job");
    store.close().await;

    // Meta redelivers everything; the server comes back on the same database.
    let (mut child, port, _, _logs) = start_server(&env, None);
    for i in 0..TOTAL {
        let wamid = format!("wamid.crash.{i}");
        let body = webhook(&wamid, &format!("4477009{:05}", i % 50));
        let res = client
            .post(format!(
                "http://127.0.0.1:{port}/api/v1/integration/whatsapp/{id}/callback"
            ))
            .header("x-hub-signature-256", sign(SECRET.as_bytes(), &body))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{wamid} on redelivery");
    }
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let _ = wait_with_timeout(&mut child, Duration::from_secs(30));
    let store = parley::store::Store::connect(&settings).await.unwrap();
    assert_eq!(
        scalar(&store, "SELECT COUNT(*) FROM inbound_message").await,
        TOTAL as i64
    );
    assert_eq!(
        scalar(
            &store,
            &format!("SELECT COUNT(*) FROM {jobs_table} WHERE job_type = 'inbound'")
        )
        .await,
        TOTAL as i64
    );
    store.close().await;
}

/// The worst moment to die: Meta has the reply, but we have not recorded that we sent it.
/// After a restart the turn finishes without sending that part again.
#[tokio::test]
async fn a_turn_killed_between_send_and_commit_never_sends_twice() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, Request, ResponseTemplate};

    use crate::engine::{EchoOpenAi, text_webhook};

    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v23.0/1065/messages"))
        .respond_with(|req: &Request| {
            let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
            if body["type"] == "text" {
                // Long enough for the test to kill the server while Meta "has" the message.
                return ResponseTemplate::new(200)
                    .set_delay(Duration::from_secs(5))
                    .set_body_json(json!({"messaging_product": "whatsapp", "messages": [{"id": "wamid.slow"}]}));
            }
            ResponseTemplate::new(200).set_body_json(json!({"success": true}))
        })
        .mount(&graph)
        .await;
    let llm = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(EchoOpenAi {
            prefix: String::new(),
        })
        .mount(&llm)
        .await;

    let db = Arc::new(TestDb::new().await);
    let mut settings = test_settings(&db);
    settings.whatsapp_graph_url = graph.uri().parse().unwrap();
    settings.lane_lease = Duration::from_secs(2);
    let app = spawn_app_on(db.clone(), settings.clone()).await;
    let ana = app.signup("Ana").await;
    let provider: serde_json::Value = app
        .post(
            "/api/v1/provider/create",
            &ana.token,
            &json!({"name": "m", "type": "openai", "baseUrl": format!("{}/v1", llm.uri())}),
        )
        .await
        .json()
        .await
        .unwrap();
    let bot: serde_json::Value = app
        .post(
            "/api/v1/bot/create",
            &ana.token,
            &json!({"name": "b", "model": "gpt-4o", "providerId": provider["id"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = app
        .create_integration(&ana, json!({"appSecret": SECRET, "phoneNumberId": "1065", "accessToken": "EAAG", "botId": bot["id"]}))
        .await;
    app.stop().await.unwrap();

    let mut env = settings_env(&settings);
    env.push(("PARLEY_WHATSAPP_GRAPH_URL".into(), graph.uri()));
    env.push(("PARLEY_COALESCE_WINDOW_MS".into(), "10".into()));
    env.push(("PARLEY_LANE_LEASE_SECS".into(), "2".into()));
    let (mut child, port, _, logs) = start_server(&env, None);
    let body = text_webhook("wamid.kill.1", "447700900123", "are you open?");
    let res = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{port}/api/v1/integration/whatsapp/{id}/callback"
        ))
        .header("x-hub-signature-256", sign(SECRET.as_bytes(), &body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let text_sends = || async {
        graph
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| {
                serde_json::from_slice::<serde_json::Value>(&r.body)
                    .is_ok_and(|b| b["type"] == "text")
            })
            .count()
    };
    for _ in 0..600 {
        if text_sends().await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if text_sends().await != 1 {
        let lines: Vec<String> = logs.try_iter().collect();
        panic!(
            "the reply never reached Meta; server log:\n{}",
            lines.join("\n")
        );
    }
    std::process::Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    let _ = wait_with_timeout(&mut child, Duration::from_secs(10));

    // Back up; the sweep wakes the contact once the dead worker's lease has lapsed.
    let (mut child, _port, _, _logs) = start_server(&env, None);
    let state = parley::startup::prepare(&settings).await.unwrap();
    crate::engine::eventually("the turn to finish", || async {
        let _ = parley::engine::sweep(&state).await;
        let store = state.store();
        scalar(
            store,
            "SELECT COUNT(*) FROM inbound_message WHERE state = 'processed'",
        )
        .await
            == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(text_sends().await, 1, "the part was not sent again");
    let unconfirmed = scalar(
        state.store(),
        "SELECT COUNT(*) FROM event_log WHERE kind = 'whatsapp.message.unconfirmed'",
    )
    .await;
    assert_eq!(unconfirmed, 1);
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let _ = wait_with_timeout(&mut child, Duration::from_secs(30));
}
