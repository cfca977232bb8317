//! The WhatsApp callback: verification, signatures, durable deduplicated storage with queued
//! jobs, allowFrom, statuses, and what is logged.

use std::time::Duration;

use parley::channels::whatsapp::signature::sign;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::helpers::{Account, TestApp, assert_error, fixture, spawn_app};

pub const SECRET: &str = "meta-app-secret-for-tests";

/// An integration with an app secret and no phone number id (so fixtures from any number pass).
pub async fn integration(app: &TestApp, who: &Account, extra: Value) -> String {
    let mut body = json!({"name": "hook", "appSecret": SECRET});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    app.create_integration(who, body).await
}

pub fn callback(id: &str) -> String {
    format!("/api/v1/integration/whatsapp/{id}/callback")
}

pub async fn post_signed(app: &TestApp, id: &str, body: &[u8]) -> reqwest::Response {
    app.client
        .post(app.url(&callback(id)))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", sign(SECRET.as_bytes(), body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let db = app.state.store().db();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            sql.to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

pub async fn stored(app: &TestApp, integration: &str) -> i64 {
    count(
        app,
        &format!("SELECT COUNT(*) FROM inbound_message WHERE integration_id = '{integration}'"),
    )
    .await
}

pub async fn queued_jobs(app: &TestApp) -> i64 {
    let sql = match app.state.store().db().get_database_backend() {
        sea_orm::DatabaseBackend::Postgres => {
            "SELECT COUNT(*) FROM apalis.jobs WHERE job_type = 'inbound'"
        }
        _ => "SELECT COUNT(*) FROM Jobs WHERE job_type = 'inbound'",
    };
    count(app, sql).await
}

async fn events_of(app: &TestApp, who: &Account, id: &str, kind: &str) -> Vec<Value> {
    let v = app
        .fetch_json(
            &format!("/api/v1/event/log/list?take=100&whatsappIntegrationId={id}&type={kind}"),
            &who.token,
        )
        .await;
    v["items"].as_array().unwrap().clone()
}

/// Messages and statuses in a webhook body, counted straight from its JSON.
fn expected(body: &Value) -> (usize, usize) {
    let mut messages = 0;
    let mut statuses = 0;
    for entry in body["entry"].as_array().into_iter().flatten() {
        for change in entry["changes"].as_array().into_iter().flatten() {
            if change["field"] == "messages" {
                messages += change["value"]["messages"].as_array().map_or(0, Vec::len);
                statuses += change["value"]["statuses"].as_array().map_or(0, Vec::len);
            }
        }
    }
    (messages, statuses)
}

#[tokio::test]
async fn verification_echoes_the_challenge_only_for_the_right_token() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let id = integration(&app, &ana, json!({})).await;
    let token = app
        .fetch_json(
            &format!("/api/v1/integration/whatsapp/{id}/fetch"),
            &ana.token,
        )
        .await["verifyToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = |mode: &str, tok: &str| {
        app.url(&format!(
            "{}?hub.mode={mode}&hub.verify_token={tok}&hub.challenge=1158201444",
            callback(&id)
        ))
    };
    let res = app
        .client
        .get(url("subscribe", &token))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(res.text().await.unwrap(), "1158201444");

    for (mode, tok) in [
        ("subscribe", "wrong"),
        ("unsubscribe", token.as_str()),
        ("subscribe", ""),
    ] {
        let res = app.client.get(url(mode, tok)).send().await.unwrap();
        assert_error(res, 403, "NOT_AUTHORIZED").await;
    }
    let res = app
        .client
        .get(app.url(&format!(
            "{}?hub.mode=subscribe&hub.verify_token={token}",
            callback(&id)
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "no challenge");
    let res = app
        .client
        .get(app.url(&format!("{}?hub.mode=subscribe", callback("wai_nope"))))
        .send()
        .await
        .unwrap();
    assert_error(res, 404, "NOT_FOUND").await;

    assert_eq!(
        events_of(&app, &ana, &id, "whatsapp.webhook.verified")
            .await
            .len(),
        1
    );
    // Failures are logged, but a flood of them is not.
    assert_eq!(
        events_of(&app, &ana, &id, "whatsapp.webhook.verification_failed")
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn unsigned_and_badly_signed_webhooks_are_refused_and_logged_without_flooding() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let id = integration(&app, &ana, json!({})).await;
    let body = fixture("webhook/text.json");
    for _ in 0..20 {
        let res = app
            .client
            .post(app.url(&callback(&id)))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_error(res, 401, "NOT_AUTHENTICATED").await;
    }
    let res = app
        .client
        .post(app.url(&callback(&id)))
        .header(
            "x-hub-signature-256",
            sign(b"some other secret", body.as_bytes()),
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "NOT_AUTHENTICATED").await;
    // A valid signature over different bytes does not pass either.
    let res = app
        .client
        .post(app.url(&callback(&id)))
        .header(
            "x-hub-signature-256",
            sign(SECRET.as_bytes(), body.as_bytes()),
        )
        .body(format!("{body} "))
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "NOT_AUTHENTICATED").await;
    assert_eq!(stored(&app, &id).await, 0);
    assert_eq!(
        events_of(&app, &ana, &id, "whatsapp.webhook.signature_failed")
            .await
            .len(),
        1,
        "rate-limited"
    );
}

#[tokio::test]
async fn without_an_app_secret_webhooks_are_refused_with_an_event_saying_so() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let id = app
        .create_integration(&ana, json!({"name": "no secret"}))
        .await;
    let res = post_signed(&app, &id, fixture("webhook/text.json").as_bytes()).await;
    assert_error(res, 401, "NOT_AUTHENTICATED").await;
    let ev = events_of(&app, &ana, &id, "whatsapp.webhook.signature_failed").await;
    assert!(
        ev[0]["message"].as_str().unwrap().contains("appSecret"),
        "{ev:?}"
    );
}

#[tokio::test]
async fn allow_unsigned_accepts_webhooks_without_a_signature_and_fetch_warns() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let id = app
        .create_integration(&ana, json!({"allowUnsigned": true}))
        .await;
    let res = app
        .client
        .post(app.url(&callback(&id)))
        .header("content-type", "application/json")
        .body(fixture("webhook/text.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(stored(&app, &id).await, 1);
    let got = app
        .fetch_json(
            &format!("/api/v1/integration/whatsapp/{id}/fetch"),
            &ana.token,
        )
        .await;
    assert!(
        got["warnings"].to_string().contains("allowUnsigned"),
        "{got}"
    );
}

#[tokio::test]
async fn oversized_and_malformed_bodies_are_refused() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let id = integration(&app, &ana, json!({})).await;
    let big = vec![b' '; parley::http::webhooks::MAX_WEBHOOK_BODY + 1];
    assert_error(post_signed(&app, &id, &big).await, 413, "BAD_REQUEST").await;
    for bad in [&b"not json"[..], b"{\"entry\": ", b""] {
        assert_error(post_signed(&app, &id, bad).await, 400, "BAD_REQUEST").await;
    }
    assert_eq!(
        events_of(&app, &ana, &id, "whatsapp.webhook.malformed")
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn every_real_payload_is_stored_and_queued() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let id = integration(&app, &ana, json!({})).await;
    let dir = format!("{}/../shared/fixtures/webhook", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    for sub in ["fields", "meta_docs"] {
        files.extend(
            std::fs::read_dir(format!("{dir}/{sub}"))
                .unwrap()
                .map(|e| e.unwrap().path()),
        );
    }
    files.retain(|p| p.extension().is_some_and(|e| e == "json"));
    files.sort();
    assert!(files.len() > 50, "fixtures found: {}", files.len());
    let (mut want_messages, mut want_statuses, mut seen_total) = (0, 0, 0);
    for file in &files {
        let body = std::fs::read(file).unwrap();
        let json: Value = serde_json::from_slice(&body).unwrap();
        let (m, s) = expected(&json);
        let res = post_signed(&app, &id, &body).await;
        let status = res.status();
        let answer: Value = res.json().await.unwrap();
        assert_eq!(status, 200, "{}: {answer}", file.display());
        // A fixture may reuse a wamid another one already delivered: that is a duplicate.
        let seen = answer["queued"].as_u64().unwrap() + answer["duplicates"].as_u64().unwrap();
        assert_eq!(seen as usize, m, "{}", file.display());
        seen_total += m;
        want_messages += answer["queued"].as_u64().unwrap() as i64;
        want_statuses += s;
    }
    // Many fixtures share the wamid `wamid.xyzxyz`: one stored row, the rest duplicates.
    assert!(seen_total > 30, "messages in fixtures: {seen_total}");
    assert!(want_messages > 5);
    assert_eq!(stored(&app, &id).await, want_messages);
    assert_eq!(queued_jobs(&app).await, want_messages);
    // Non-message fields are kept in the event log.
    assert!(
        !events_of(&app, &ana, &id, "whatsapp.webhook.field")
            .await
            .is_empty()
    );
    assert!(want_statuses > 5);
    let statuses = count(
        &app,
        &format!("SELECT COUNT(*) FROM message_status WHERE integration_id = '{id}'"),
    )
    .await;
    assert!(statuses > 5, "statuses stored: {statuses}");
    // The stored payload is the message exactly as received.
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let fresh = integration(&app, &ana, json!({})).await;
    assert_eq!(
        post_signed(&app, &fresh, fixture("webhook/text.json").as_bytes())
            .await
            .status(),
        200
    );
    let row = parley::store::entities::inbound_message::Entity::find()
        .filter(parley::store::entities::inbound_message::Column::IntegrationId.eq(fresh.as_str()))
        .one(app.state.store().db())
        .await
        .unwrap()
        .unwrap();
    let payload: Value = serde_json::from_str(&row.payload).unwrap();
    let original: Value = serde_json::from_str(&fixture("webhook/text.json")).unwrap();
    assert_eq!(
        payload["message"],
        original["entry"][0]["changes"][0]["value"]["messages"][0]
    );
    assert_eq!(payload["contact"]["name"], "Test Name");
    assert_eq!(row.state, "queued");
    assert_eq!(row.sent_at, 1_697_043_223);
}

fn message(wamid: &str, from: &str, timestamp: Value, extra: Value) -> Value {
    let mut m = json!({"from": from, "id": wamid, "timestamp": timestamp, "type": "text", "text": {"body": "hi"}});
    for (k, v) in extra.as_object().unwrap() {
        m[k] = v.clone();
    }
    m
}

fn envelope(changes: Vec<Value>) -> Value {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": changes}]})
}

fn messages_change(
    phone_number_id: &str,
    messages: Vec<Value>,
    statuses: Vec<Value>,
    contacts: Option<Value>,
) -> Value {
    let mut value = json!({
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100200", "phone_number_id": phone_number_id},
        "messages": messages,
        "statuses": statuses,
    });
    if let Some(c) = contacts {
        value["contacts"] = c;
    }
    json!({"field": "messages", "value": value})
}

#[tokio::test]
async fn batches_of_entries_messages_and_statuses_with_odd_shapes_are_all_stored() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let id = integration(&app, &ana, json!({"phoneNumberId": "1065"})).await;
    let body = json!({
        "object": "whatsapp_business_account",
        "entry": [
            {"id": "A", "changes": [
                messages_change("1065", vec![
                    message("wamid.b1", "447700900001", json!("1700000000"), json!({})),
                    message("wamid.b2", "447700900002", json!(1700000001), json!({})),
                ], vec![], Some(json!([{"wa_id": "447700900001", "profile": {"name": "One"}}, {"wa_id": "447700900002"}]))),
                messages_change("1065", vec![], vec![], None),
            ]},
            {"id": "B", "changes": [
                messages_change("1065", vec![
                    message("wamid.b3", "447700900003", json!("1700000002"), json!({"type": "hologram", "hologram": {"x": 1}})),
                ], vec![json!({"id": "wamid.out1", "status": "delivered", "timestamp": 1700000003, "recipient_id": "447700900001"})], None),
                {"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}},
            ]},
            {"id": "C", "changes": []}
        ]
    });
    let res = post_signed(&app, &id, body.to_string().as_bytes()).await;
    assert_eq!(res.status(), 200);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(
        answer,
        json!({"queued": 3, "ignored": 0, "duplicates": 0, "statuses": 1})
    );
    assert_eq!(stored(&app, &id).await, 3);
    assert_eq!(queued_jobs(&app).await, 3);
    assert_eq!(
        events_of(&app, &ana, &id, "whatsapp.message.unknown_type")
            .await
            .len(),
        1
    );
    assert_eq!(
        events_of(&app, &ana, &id, "whatsapp.webhook.field")
            .await
            .len(),
        1
    );
    assert_eq!(
        events_of(&app, &ana, &id, "whatsapp.message.received")
            .await
            .len(),
        3
    );
    let res = post_signed(&app, &id, envelope(vec![]).to_string().as_bytes()).await;
    assert_eq!(res.status(), 200);
    let res = post_signed(
        &app,
        &id,
        br#"{"object":"whatsapp_business_account","entry":[]}"#,
    )
    .await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_change_for_another_phone_number_is_not_processed() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let id = integration(&app, &ana, json!({"phoneNumberId": "1065"})).await;
    let body = envelope(vec![messages_change(
        "9999",
        vec![message("wamid.x", "447700900001", json!("1"), json!({}))],
        vec![],
        None,
    )]);
    let res = post_signed(&app, &id, body.to_string().as_bytes()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(stored(&app, &id).await, 0);
    assert_eq!(
        events_of(&app, &ana, &id, "whatsapp.webhook.wrong_number")
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn the_same_payload_posted_20_times_at_once_is_stored_and_queued_once() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let id = integration(&app, &ana, json!({})).await;
    let body = fixture("webhook/text.json").into_bytes();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (client, url, body) = (app.client.clone(), app.url(&callback(&id)), body.clone());
        tasks.push(tokio::spawn(async move {
            let res = client
                .post(url)
                .header("x-hub-signature-256", sign(SECRET.as_bytes(), &body))
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            res.json::<Value>().await.unwrap()
        }));
    }
    let mut queued = 0;
    let mut duplicates = 0;
    for t in tasks {
        let a = t.await.unwrap();
        queued += a["queued"].as_u64().unwrap();
        duplicates += a["duplicates"].as_u64().unwrap();
    }
    assert_eq!((queued, duplicates), (1, 19));
    assert_eq!(stored(&app, &id).await, 1);
    assert_eq!(queued_jobs(&app).await, 1);
    // Days later, Meta redelivers: still acknowledged, still once.
    let res = post_signed(&app, &id, &body).await;
    assert_eq!(res.json::<Value>().await.unwrap()["duplicates"], 1);
    assert_eq!(queued_jobs(&app).await, 1);
}

#[tokio::test]
async fn senders_outside_allow_from_are_stored_as_ignored_and_never_queued() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let id = integration(&app, &ana, json!({"allowFrom": "+447700900001"})).await;
    let body = envelope(vec![messages_change(
        "1",
        vec![
            message("wamid.ok", "447700900001", json!("1"), json!({})),
            message("wamid.no", "447700900002", json!("1"), json!({})),
        ],
        vec![],
        None,
    )]);
    let res = post_signed(&app, &id, body.to_string().as_bytes()).await;
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"queued": 1, "ignored": 1, "duplicates": 0, "statuses": 0})
    );
    assert_eq!(stored(&app, &id).await, 2);
    assert_eq!(queued_jobs(&app).await, 1);
    let ev = events_of(&app, &ana, &id, "whatsapp.message.ignored").await;
    assert_eq!(ev[0]["meta"]["from"], "447700900002");
    // Empty allowFrom denies everyone.
    let none = integration(&app, &ana, json!({"allowFrom": ""})).await;
    let body = envelope(vec![messages_change(
        "1",
        vec![message("wamid.z", "447700900001", json!("1"), json!({}))],
        vec![],
        None,
    )]);
    let res = post_signed(&app, &none, body.to_string().as_bytes()).await;
    assert_eq!(res.json::<Value>().await.unwrap()["ignored"], 1);
}

async fn outbound(app: &TestApp, who: &Account, integration: &str, wamid: &str) -> String {
    use parley::store::entities::message;
    use sea_orm::{ActiveModelTrait, ActiveValue::Set};
    let s = app
        .seed_conversation(&who.tenant_id, integration, "447700900001", 1)
        .await;
    let id = parley::ids::new_id("msg");
    let now = parley::time::now_ms();
    message::ActiveModel {
        id: Set(id.clone()),
        tenant_id: Set(who.tenant_id.clone()),
        conversation_id: Set(s.conversation_id),
        kind: Set("bot".into()),
        text: Set("hello".into()),
        meta: Set(json!({})),
        wamid: Set(Some(wamid.into())),
        delivery_status: Set(Some("pending".into())),
        error_code: Set(None),
        error_title: Set(None),
        turn_id: Set(None),
        part: Set(None),
        inbound_id: Set(None),
        input_tokens: Set(None),
        output_tokens: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(app.state.store().db())
    .await
    .unwrap();
    id
}

async fn delivery(app: &TestApp, message_id: &str) -> parley::store::entities::message::Model {
    use sea_orm::EntityTrait;
    parley::store::entities::message::Entity::find_by_id(message_id.to_owned())
        .one(app.state.store().db())
        .await
        .unwrap()
        .unwrap()
}

fn status(wamid: &str, status: &str, errors: Option<Value>) -> Value {
    let mut s = json!({"id": wamid, "status": status, "timestamp": "1700000100", "recipient_id": "447700900001",
        "conversation": {"id": "c1", "origin": {"type": "service"}}, "pricing": {"billable": true, "category": "service"}});
    if let Some(e) = errors {
        s["errors"] = e;
    }
    s
}

#[tokio::test]
async fn statuses_move_delivery_forward_and_never_back() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let id = integration(&app, &ana, json!({})).await;
    let msg = outbound(&app, &ana, &id, "wamid.out.1").await;
    let send = |s: &str| {
        envelope(vec![messages_change(
            "1",
            vec![],
            vec![status("wamid.out.1", s, None)],
            None,
        )])
        .to_string()
    };
    post_signed(&app, &id, send("sent").as_bytes()).await;
    assert_eq!(
        delivery(&app, &msg).await.delivery_status.as_deref(),
        Some("sent")
    );
    post_signed(&app, &id, send("read").as_bytes()).await;
    post_signed(&app, &id, send("delivered").as_bytes()).await;
    assert_eq!(
        delivery(&app, &msg).await.delivery_status.as_deref(),
        Some("read"),
        "never backwards"
    );
    // Redelivered statuses are stored and logged once.
    post_signed(&app, &id, send("read").as_bytes()).await;
    assert_eq!(
        events_of(&app, &ana, &id, "whatsapp.status.read")
            .await
            .len(),
        1
    );
    assert_eq!(
        events_of(&app, &ana, &id, "whatsapp.status.delivered")
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn a_failed_status_records_metas_error_and_logs_it() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let id = integration(&app, &ana, json!({})).await;
    let body: Value =
        serde_json::from_str(&fixture("webhook/status_failed_131047_reengagement.json")).unwrap();
    let wamid = body["entry"][0]["changes"][0]["value"]["statuses"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let msg = outbound(&app, &ana, &id, &wamid).await;
    let res = post_signed(&app, &id, body.to_string().as_bytes()).await;
    assert_eq!(res.status(), 200);
    let row = delivery(&app, &msg).await;
    assert_eq!(row.delivery_status.as_deref(), Some("failed"));
    assert_eq!(row.error_code, Some(131047));
    assert!(
        row.error_title
            .unwrap()
            .to_lowercase()
            .contains("re-engagement")
    );
    let ev = events_of(&app, &ana, &id, "whatsapp.status.failed").await;
    assert_eq!(ev[0]["meta"]["code"], 131047);
    assert_eq!(ev[0]["level"], "error");
    // Other codes too.
    let other = envelope(vec![messages_change(
        "1",
        vec![],
        vec![status(
            "wamid.unknown.9",
            "failed",
            Some(json!([{"code": 131026, "title": "Message undeliverable"}])),
        )],
        None,
    )]);
    post_signed(&app, &id, other.to_string().as_bytes()).await;
    let ev = events_of(&app, &ana, &id, "whatsapp.status.failed").await;
    assert_eq!(ev[0]["meta"]["code"], 131026);
}

#[tokio::test]
async fn a_status_that_arrives_before_the_send_returned_is_applied_later() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let id = integration(&app, &ana, json!({})).await;
    let body = envelope(vec![messages_change(
        "1",
        vec![],
        vec![status("wamid.early", "delivered", None)],
        None,
    )]);
    assert_eq!(
        post_signed(&app, &id, body.to_string().as_bytes())
            .await
            .status(),
        200
    );
    // Now the send call's answer is recorded.
    let msg = outbound(&app, &ana, &id, "wamid.early").await;
    assert_eq!(
        delivery(&app, &msg).await.delivery_status.as_deref(),
        Some("pending")
    );
    parley::ingest::apply_stored_statuses(app.state.store().db(), &[[id.as_str(), "wamid.early"]])
        .await
        .unwrap();
    assert_eq!(
        delivery(&app, &msg).await.delivery_status.as_deref(),
        Some("delivered")
    );
    // Statuses never start a conversation turn.
    assert_eq!(queued_jobs(&app).await, 0);
}

#[tokio::test]
async fn a_deleted_integrations_callback_is_gone_at_once() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let id = integration(&app, &ana, json!({})).await;
    let body = fixture("webhook/text.json");
    assert_eq!(post_signed(&app, &id, body.as_bytes()).await.status(), 200);
    app.post(
        &format!("/api/v1/integration/whatsapp/{id}/delete"),
        &ana.token,
        &json!({}),
    )
    .await;
    assert_error(
        post_signed(&app, &id, body.as_bytes()).await,
        404,
        "NOT_FOUND",
    )
    .await;
    let res = app
        .client
        .get(app.url(&format!(
            "{}?hub.mode=subscribe&hub.verify_token=x&hub.challenge=1",
            callback(&id)
        )))
        .send()
        .await
        .unwrap();
    assert_error(res, 404, "NOT_FOUND").await;
    // What it received stays.
    assert_eq!(stored(&app, &id).await, 1);
}

#[tokio::test]
async fn storage_down_answers_503_so_meta_retries() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let id = integration(&app, &ana, json!({})).await;
    // Warm the integration cache, then take the database away.
    assert_eq!(
        post_signed(&app, &id, fixture("webhook/image.json").as_bytes())
            .await
            .status(),
        200
    );
    app.state.store().close().await;
    let res = post_signed(&app, &id, fixture("webhook/text.json").as_bytes()).await;
    assert_error(res, 503, "SERVICE_UNAVAILABLE").await;
    tokio::time::sleep(Duration::from_millis(10)).await;
}
