//! Chaos: 2,000 messages from 100 contacts, 5% of them redelivered, and the server killed with
//! SIGKILL twice along the way. Afterwards every message belongs to exactly one reply turn,
//! answered in order per contact, and no reply was sent twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parley::channels::whatsapp::signature::sign;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::engine::{EchoOpenAi, sent_texts, text_webhook};
use crate::helpers::{TestDb, settings_env, spawn_app_on, test_settings};
use crate::process::{start_server, wait_with_timeout};
use crate::webhooks::SECRET;

const CONTACTS: usize = 100;
const PER_CONTACT: usize = 20;

async fn rows(db: &sea_orm::DatabaseConnection, sql: &str) -> Vec<sea_orm::QueryResult> {
    db.query_all_raw(Statement::from_string(
        db.get_database_backend(),
        sql.to_owned(),
    ))
    .await
    .unwrap()
}

fn contact(c: usize) -> String {
    format!("4477008{c:05}")
}

#[tokio::test]
async fn two_thousand_messages_with_redeliveries_and_two_sigkills_get_one_ordered_turn_each() {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v23.0/1065/messages"))
        .respond_with(|req: &Request| {
            let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
            let id = uuid::Uuid::new_v4().simple();
            ResponseTemplate::new(200).set_body_json(json!({"messaging_product": "whatsapp", "messages": [{"id": format!("wamid.{id}")}], "success": body["status"] == "read"}))
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
    let provider: Value = app
        .post(
            "/api/v1/provider/create",
            &ana.token,
            &json!({"name": "m", "type": "openai", "baseUrl": format!("{}/v1", llm.uri())}),
        )
        .await
        .json()
        .await
        .unwrap();
    let bot: Value = app
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

    // One fixed port, so senders find the server again after each restart.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut env = settings_env(&settings);
    env.push(("PARLEY_WHATSAPP_GRAPH_URL".into(), graph.uri()));
    env.push(("PARLEY_COALESCE_WINDOW_MS".into(), "20".into()));
    env.push(("PARLEY_LANE_LEASE_SECS".into(), "2".into()));
    env.push(("PARLEY_WORKER_CONCURRENCY".into(), "8".into()));
    let start = |env: &Vec<(String, String)>| {
        let mut env = env.clone();
        env.retain(|(k, _)| k != "PARLEY_LISTEN");
        env.push(("PARLEY_LISTEN".into(), format!("127.0.0.1:{port}")));
        start_server(&env, None)
    };
    let (mut child, _, _, _logs) = start(&env);

    let acked = Arc::new(AtomicUsize::new(0));
    let url = format!("http://127.0.0.1:{port}/api/v1/integration/whatsapp/{id}/callback");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut senders = Vec::new();
    for lane in 0..16 {
        let (client, url, acked) = (client.clone(), url.clone(), acked.clone());
        senders.push(tokio::spawn(async move {
            // Like Meta: keep redelivering until a 200.
            let deliver = |body: Vec<u8>| {
                let (client, url) = (client.clone(), url.clone());
                async move {
                    loop {
                        let res = client
                            .post(&url)
                            .header("x-hub-signature-256", sign(SECRET.as_bytes(), &body))
                            .body(body.clone())
                            .send()
                            .await;
                        if res.is_ok_and(|r| r.status() == 200) {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            };
            for c in (lane..CONTACTS).step_by(16) {
                for m in 0..PER_CONTACT {
                    let body = text_webhook(
                        &format!("wamid.chaos.{c}.{m}"),
                        &contact(c),
                        &format!("c{c}m{m}"),
                    );
                    deliver(body.clone()).await;
                    acked.fetch_add(1, Ordering::Relaxed);
                    // 5% redelivered: Meta retries what it thinks was lost.
                    if (c * PER_CONTACT + m) % 20 == 7 {
                        deliver(body).await;
                    }
                }
            }
        }));
    }
    // Two SIGKILLs at a third and at two thirds of the stream.
    for at in [CONTACTS * PER_CONTACT / 3, 2 * CONTACTS * PER_CONTACT / 3] {
        while acked.load(Ordering::Relaxed) < at {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        std::process::Command::new("kill")
            .args(["-KILL", &child.id().to_string()])
            .status()
            .unwrap();
        let _ = wait_with_timeout(&mut child, Duration::from_secs(10));
        (child, _, _, _) = start(&env);
    }
    for s in senders {
        s.await.unwrap();
    }

    // Wait until every message is answered; the sweep wakes contacts a dead worker held.
    let state = parley::startup::prepare(&settings).await.unwrap();
    let total = (CONTACTS * PER_CONTACT) as i64;
    for i in 0.. {
        let done = rows(
            state.store().db(),
            "SELECT COUNT(*) FROM inbound_message WHERE state = 'processed'",
        )
        .await[0]
            .try_get_by_index::<i64>(0)
            .unwrap();
        if done == total {
            break;
        }
        assert!(i < 2400, "only {done} of {total} messages answered");
        if i % 20 == 0 {
            let _ = parley::engine::sweep(&state).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let _ = wait_with_timeout(&mut child, Duration::from_secs(30));

    // Stored once each, whatever the redeliveries.
    let stored = rows(state.store().db(), "SELECT COUNT(*) FROM inbound_message").await[0]
        .try_get_by_index::<i64>(0)
        .unwrap();
    assert_eq!(stored, total);
    // Each message in exactly one turn; a contact's turns follow its messages' order.
    let claimed = rows(
        state.store().db(),
        "SELECT wa_id, id, turn_id FROM inbound_message ORDER BY wa_id, id",
    )
    .await;
    let mut last_turn: HashMap<String, String> = HashMap::new();
    for r in &claimed {
        let wa: String = r.try_get("", "wa_id").unwrap();
        let turn: Option<String> = r.try_get("", "turn_id").unwrap();
        let turn = turn.expect("every message belongs to a turn");
        if let Some(prev) = last_turn.get(&wa) {
            assert!(&turn >= prev, "{wa}: turns out of order");
        }
        last_turn.insert(wa, turn);
    }
    // What reached WhatsApp: every message answered at most once, in order, per contact. A
    // part lost in the one ambiguous moment (sent, crash before recording it) is never resent;
    // those are counted as unconfirmed.
    let unconfirmed = rows(
        state.store().db(),
        "SELECT COUNT(*) FROM event_log WHERE kind = 'whatsapp.message.unconfirmed'",
    )
    .await[0]
        .try_get_by_index::<i64>(0)
        .unwrap();
    let sent = sent_texts(&graph).await;
    let mut missing = 0;
    for c in 0..CONTACTS {
        let seen: Vec<String> = sent
            .get(&contact(c))
            .into_iter()
            .flatten()
            .flat_map(|r| r.split(" | ").map(str::to_owned).collect::<Vec<_>>())
            .collect();
        let want: Vec<String> = (0..PER_CONTACT).map(|m| format!("c{c}m{m}")).collect();
        let positions: Vec<usize> = seen
            .iter()
            .map(|s| {
                want.iter()
                    .position(|w| w == s)
                    .unwrap_or_else(|| panic!("contact {c}: unexpected reply {s}"))
            })
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "contact {c}: replies out of order or twice: {seen:?}"
        );
        missing += PER_CONTACT - seen.len();
    }
    assert!(
        missing as i64 <= unconfirmed * PER_CONTACT as i64,
        "{missing} messages never answered, {unconfirmed} unconfirmed parts"
    );
}
