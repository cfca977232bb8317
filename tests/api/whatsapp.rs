//! WhatsApp integrations: masking, the sentinel, meta merge, the verify token, setup against a
//! mocked Graph API, initiate and the 24-hour window, and what delete keeps.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{TestApp, assert_error, fixture, spawn_app, spawn_app_with};

const TOKEN: &str = "EAAG-secret-access-token-123";
const APP_SECRET: &str = "0123456789abcdef-app-secret";

async fn app_with_graph() -> (TestApp, MockServer) {
    let graph = MockServer::start().await;
    let uri = graph.uri();
    let app = spawn_app_with(|s| {
        s.whatsapp_graph_url = uri.parse().unwrap();
        s.whatsapp_graph_timeout = Duration::from_millis(500);
        s.public_url = "https://parley.example.com/base/".parse().unwrap();
    })
    .await;
    (app, graph)
}

fn sealed_open(app: &TestApp, tenant: &str, id: &str, column: &str, sealed: &str) -> String {
    use secrecy::ExposeSecret;
    let ctx = parley::http::api::fields::secret_context(tenant, "whatsapp_integration", id, column);
    app.state
        .vault()
        .open(sealed, &ctx)
        .unwrap()
        .expose_secret()
        .to_owned()
}

async fn raw_row(app: &TestApp, id: &str) -> parley::store::entities::whatsapp_integration::Model {
    use sea_orm::EntityTrait;
    parley::store::entities::whatsapp_integration::Entity::find_by_id(id.to_owned())
        .one(app.state.store().db())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn fetch_and_list_mask_secrets_and_show_the_callback_and_verify_token() {
    let (app, _graph) = app_with_graph().await;
    let ana = app.signup("Ana").await;
    let id = app
        .create_integration(
            &ana,
            json!({"name": "Shop", "phoneNumberId": "106540352242922", "accessToken": TOKEN, "appSecret": APP_SECRET}),
        )
        .await;
    let bare = app.create_integration(&ana, json!({"name": "Bare"})).await;

    let got = app
        .fetch_json(
            &format!("/api/v1/integration/whatsapp/{id}/fetch"),
            &ana.token,
        )
        .await;
    assert_eq!(got["accessToken"], "********");
    assert_eq!(got["appSecret"], "********");
    assert_eq!(got["status"], "not_verified");
    assert_eq!(
        got["callbackUrl"],
        format!("https://parley.example.com/base/api/v1/integration/whatsapp/{id}/callback")
    );
    let verify = got["verifyToken"].as_str().unwrap();
    assert!(verify.len() >= 22, "at least 128 bits: {verify}");
    assert!(
        verify
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    assert_eq!(got["allowFrom"], "*", "default allows everyone");
    assert_eq!(got["sessionDuration"], 86_400_000);

    let bare = app
        .fetch_json(
            &format!("/api/v1/integration/whatsapp/{bare}/fetch"),
            &ana.token,
        )
        .await;
    assert_eq!(bare["accessToken"], Value::Null);
    assert_eq!(bare["appSecret"], Value::Null);
    assert_eq!(bare["status"], "needs_setup");
    assert_ne!(bare["verifyToken"], got["verifyToken"]);

    let list = app
        .fetch_json("/api/v1/integration/whatsapp/list", &ana.token)
        .await;
    let text = list.to_string();
    assert!(
        !text.contains(TOKEN) && !text.contains(APP_SECRET),
        "{text}"
    );
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert_eq!(list["items"][0]["id"], bare["id"], "newest first");
    assert!(list["items"][1]["verifyToken"].is_string());
}

#[tokio::test]
async fn the_mask_keeps_a_secret_null_clears_it_and_a_value_replaces_it() {
    let (app, _graph) = app_with_graph().await;
    let ana = app.signup("Ana").await;
    let id = app
        .create_integration(
            &ana,
            json!({"phoneNumberId": "1065", "accessToken": TOKEN, "appSecret": APP_SECRET}),
        )
        .await;
    let url = format!("/api/v1/integration/whatsapp/{id}/update");

    // Sending back what fetch showed keeps the secrets.
    let fetched = app
        .fetch_json(
            &format!("/api/v1/integration/whatsapp/{id}/fetch"),
            &ana.token,
        )
        .await;
    let res = app
        .post(&url, &ana.token, &json!({"accessToken": fetched["accessToken"], "appSecret": "********", "name": "Renamed"}))
        .await;
    assert_eq!(res.status(), 200);
    let row = raw_row(&app, &id).await;
    assert_eq!(
        sealed_open(
            &app,
            &ana.tenant_id,
            &id,
            "access_token",
            row.access_token.as_deref().unwrap()
        ),
        TOKEN
    );
    assert_eq!(
        sealed_open(
            &app,
            &ana.tenant_id,
            &id,
            "app_secret",
            row.app_secret.as_deref().unwrap()
        ),
        APP_SECRET
    );
    assert_eq!(row.name.as_deref(), Some("Renamed"));

    // A new value replaces, null clears.
    app.post(&url, &ana.token, &json!({"accessToken": "EAAG-new-token"}))
        .await;
    let row = raw_row(&app, &id).await;
    assert_eq!(
        sealed_open(
            &app,
            &ana.tenant_id,
            &id,
            "access_token",
            row.access_token.as_deref().unwrap()
        ),
        "EAAG-new-token"
    );
    app.post(&url, &ana.token, &json!({"appSecret": null}))
        .await;
    let got = app
        .fetch_json(
            &format!("/api/v1/integration/whatsapp/{id}/fetch"),
            &ana.token,
        )
        .await;
    assert_eq!(got["appSecret"], Value::Null);
    assert_eq!(got["accessToken"], "********");
    assert!(got["warnings"].to_string().contains("appSecret"), "{got}");
}

#[tokio::test]
async fn meta_is_merged_on_update_and_null_removes_a_key() {
    let (app, _graph) = app_with_graph().await;
    let ana = app.signup("Ana").await;
    let id = app
        .create_integration(&ana, json!({"meta": {"a": 1, "nested": {"x": 1, "y": [1, 2]}, "keep": "k", "dropped": null}}))
        .await;
    let created = app
        .fetch_json(
            &format!("/api/v1/integration/whatsapp/{id}/fetch"),
            &ana.token,
        )
        .await;
    assert_eq!(
        created["meta"],
        json!({"a": 1, "nested": {"x": 1, "y": [1, 2]}, "keep": "k"})
    );

    let res = app
        .post(
            &format!("/api/v1/integration/whatsapp/{id}/update"),
            &ana.token,
            &json!({"meta": {"a": null, "nested": {"z": {"deep": true}}, "new": "v"}}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let got = app
        .fetch_json(
            &format!("/api/v1/integration/whatsapp/{id}/fetch"),
            &ana.token,
        )
        .await;
    assert_eq!(
        got["meta"],
        json!({"nested": {"z": {"deep": true}}, "keep": "k", "new": "v"})
    );

    // An update without meta leaves it alone; meta must be an object.
    app.post(
        &format!("/api/v1/integration/whatsapp/{id}/update"),
        &ana.token,
        &json!({"name": "x"}),
    )
    .await;
    let again = app
        .fetch_json(
            &format!("/api/v1/integration/whatsapp/{id}/fetch"),
            &ana.token,
        )
        .await;
    assert_eq!(again["meta"], got["meta"]);
    let res = app
        .post(
            &format!("/api/v1/integration/whatsapp/{id}/update"),
            &ana.token,
            &json!({"meta": [1]}),
        )
        .await;
    assert_error(res, 400, "BAD_REQUEST").await;
}

#[tokio::test]
async fn list_filters_by_meta_as_the_sdk_sends_it() {
    let (app, _graph) = app_with_graph().await;
    let ana = app.signup("Ana").await;
    let sales = app
        .create_integration(&ana, json!({"meta": {"team": "sales", "region": "eu"}}))
        .await;
    let sales_us = app
        .create_integration(&ana, json!({"meta": {"team": "sales", "region": "us"}}))
        .await;
    app.create_integration(&ana, json!({"meta": {"team": "support"}}))
        .await;

    let ids = |v: Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let got = ids(app
        .fetch_json(
            "/api/v1/integration/whatsapp/list?meta.team=sales",
            &ana.token,
        )
        .await);
    assert_eq!(got, vec![sales_us.clone(), sales.clone()]);
    let got = ids(app
        .fetch_json(
            "/api/v1/integration/whatsapp/list?meta.team=sales&meta.region=eu",
            &ana.token,
        )
        .await);
    assert_eq!(got, vec![sales.clone()]);
    let got = ids(app
        .fetch_json(
            "/api/v1/integration/whatsapp/list?meta%5Bregion%5D=us",
            &ana.token,
        )
        .await);
    assert_eq!(got, vec![sales_us]);
    let got = ids(app
        .fetch_json(
            "/api/v1/integration/whatsapp/list?meta.team=nobody",
            &ana.token,
        )
        .await);
    assert!(got.is_empty());
    let res = app
        .get(
            "/api/v1/integration/whatsapp/list?meta.bad%27key=1",
            &ana.token,
        )
        .await;
    assert_error(res, 400, "BAD_REQUEST").await;
}

#[tokio::test]
async fn the_verify_token_never_changes() {
    let (app, _graph) = app_with_graph().await;
    let ana = app.signup("Ana").await;
    let res = app
        .post(
            "/api/v1/integration/whatsapp/create",
            &ana.token,
            &json!({"verifyToken": "mine"}),
        )
        .await;
    assert_error(res, 400, "BAD_REQUEST").await;

    let id = app.create_integration(&ana, json!({})).await;
    let url = format!("/api/v1/integration/whatsapp/{id}/update");
    let before = app
        .fetch_json(
            &format!("/api/v1/integration/whatsapp/{id}/fetch"),
            &ana.token,
        )
        .await;
    let token = before["verifyToken"].clone();

    let res = app
        .post(&url, &ana.token, &json!({"verifyToken": "attacker-chosen"}))
        .await;
    let err = assert_error(res, 400, "BAD_REQUEST").await;
    assert!(err["message"].as_str().unwrap().contains("verifyToken"));
    // Sending back the same value is fine (round-tripping a fetched object).
    let res = app
        .post(
            &url,
            &ana.token,
            &json!({"verifyToken": token, "name": "n"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    for body in [
        json!({"accessToken": "x"}),
        json!({"phoneNumberId": "123"}),
        json!({"meta": {"a": 1}}),
    ] {
        app.post(&url, &ana.token, &body).await;
    }
    let after = app
        .fetch_json(
            &format!("/api/v1/integration/whatsapp/{id}/fetch"),
            &ana.token,
        )
        .await;
    assert_eq!(after["verifyToken"], token);
}

#[tokio::test]
async fn create_and_update_validate_their_fields() {
    let (app, _graph) = app_with_graph().await;
    let ana = app.signup("Ana").await;
    for body in [
        json!({"sessionDuration": 10}),
        json!({"sessionDuration": 1.5e12}),
        json!({"sessionDuration": "long"}),
        json!({"allowFrom": "not a number"}),
        json!({"phoneNumberId": "abc"}),
        json!({"contactCollection": "yes"}),
        json!({"name": "x".repeat(300)}),
        json!({"meta": "string"}),
    ] {
        let res = app
            .post("/api/v1/integration/whatsapp/create", &ana.token, &body)
            .await;
        assert_error(res, 400, "BAD_REQUEST").await;
    }
    let res = app
        .post(
            "/api/v1/integration/whatsapp/create",
            &ana.token,
            &json!({"botId": "bot_nope"}),
        )
        .await;
    assert_error(res, 404, "NOT_FOUND").await;
    let id = app
        .create_integration(
            &ana,
            json!({"allowFrom": "+447700900123\n15551234567", "sessionDuration": 3600000}),
        )
        .await;
    let got = app
        .fetch_json(
            &format!("/api/v1/integration/whatsapp/{id}/fetch"),
            &ana.token,
        )
        .await;
    assert_eq!(got["sessionDuration"], 3_600_000);
    let res = app
        .post(
            &format!("/api/v1/integration/whatsapp/{id}/update"),
            &ana.token,
            &json!({"allowFrom": "12"}),
        )
        .await;
    assert_error(res, 400, "BAD_REQUEST").await;
}

async fn setup(app: &TestApp, token: &str, id: &str) -> reqwest::Response {
    app.post(
        &format!("/api/v1/integration/whatsapp/{id}/setup"),
        token,
        &json!({}),
    )
    .await
}

async fn events(app: &TestApp, token: &str, id: &str) -> Vec<Value> {
    let v = app
        .fetch_json(
            &format!("/api/v1/event/log/list?whatsappIntegrationId={id}"),
            token,
        )
        .await;
    v["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn setup_succeeds_when_meta_accepts_the_number_and_token() {
    let (app, graph) = app_with_graph().await;
    Mock::given(method("GET"))
        .and(path("/v23.0/106540352242922"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "verified_name": "Acme Shop", "display_phone_number": "+1 555-010-0200",
            "id": "106540352242922", "quality_rating": "GREEN"
        })))
        .expect(1)
        .mount(&graph)
        .await;
    let ana = app.signup("Ana").await;
    let id = app
        .create_integration(
            &ana,
            json!({"phoneNumberId": "106540352242922", "accessToken": TOKEN}),
        )
        .await;
    let res = setup(&app, &ana.token, &id).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"id": id}));
    let got = app
        .fetch_json(
            &format!("/api/v1/integration/whatsapp/{id}/fetch"),
            &ana.token,
        )
        .await;
    assert_eq!(got["status"], "ready");
    assert!(got["statusMessage"].as_str().unwrap().contains("Acme Shop"));
    let ev = events(&app, &ana.token, &id).await;
    assert_eq!(ev[0]["type"], "whatsapp.setup.succeeded");
    assert_eq!(ev[0]["level"], "info");
}

#[tokio::test]
async fn setup_explains_an_expired_token() {
    let (app, graph) = app_with_graph().await;
    Mock::given(method("GET"))
        .and(path("/v23.0/106540352242922"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_string(fixture("graph/error_190_expired_token.json")),
        )
        .mount(&graph)
        .await;
    let ana = app.signup("Ana").await;
    let id = app
        .create_integration(
            &ana,
            json!({"phoneNumberId": "106540352242922", "accessToken": TOKEN}),
        )
        .await;
    let err = assert_error(
        setup(&app, &ana.token, &id).await,
        422,
        "UNPROCESSABLE_ENTITY",
    )
    .await;
    let msg = err["message"].as_str().unwrap();
    assert!(msg.contains("190") && msg.contains("access token"), "{msg}");
    assert!(!msg.contains(TOKEN));
    let got = app
        .fetch_json(
            &format!("/api/v1/integration/whatsapp/{id}/fetch"),
            &ana.token,
        )
        .await;
    assert_eq!(got["status"], "token_invalid");
    let ev = events(&app, &ana.token, &id).await;
    assert_eq!(ev[0]["type"], "whatsapp.setup.failed");
    assert_eq!(ev[0]["level"], "error");
    assert_eq!(ev[0]["meta"]["code"], 190);
}

#[tokio::test]
async fn setup_explains_a_wrong_phone_number_id() {
    let (app, graph) = app_with_graph().await;
    Mock::given(method("GET"))
        .and(path("/v23.0/999"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_string(fixture("graph/error_100_invalid_parameter.json")),
        )
        .mount(&graph)
        .await;
    let ana = app.signup("Ana").await;
    let id = app
        .create_integration(&ana, json!({"phoneNumberId": "999", "accessToken": TOKEN}))
        .await;
    let err = assert_error(
        setup(&app, &ana.token, &id).await,
        422,
        "UNPROCESSABLE_ENTITY",
    )
    .await;
    let msg = err["message"].as_str().unwrap();
    assert!(msg.contains("100") && msg.contains("999"), "{msg}");
    let got = app
        .fetch_json(
            &format!("/api/v1/integration/whatsapp/{id}/fetch"),
            &ana.token,
        )
        .await;
    assert_eq!(got["status"], "setup_failed");
}

#[tokio::test]
async fn setup_reports_a_graph_timeout() {
    let (app, graph) = app_with_graph().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_delay(Duration::from_secs(3))
                .set_body_json(json!({"id": "1"})),
        )
        .mount(&graph)
        .await;
    let ana = app.signup("Ana").await;
    let id = app
        .create_integration(&ana, json!({"phoneNumberId": "1", "accessToken": TOKEN}))
        .await;
    let err = assert_error(
        setup(&app, &ana.token, &id).await,
        422,
        "UNPROCESSABLE_ENTITY",
    )
    .await;
    assert!(
        err["message"].as_str().unwrap().contains("did not answer"),
        "{err}"
    );
    assert_eq!(
        events(&app, &ana.token, &id).await[0]["meta"]["reason"],
        "timeout"
    );
}

#[tokio::test]
async fn setup_names_missing_credentials_without_calling_meta() {
    let (app, graph) = app_with_graph().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&graph)
        .await;
    let ana = app.signup("Ana").await;
    let id = app.create_integration(&ana, json!({"name": "empty"})).await;
    let err = assert_error(
        setup(&app, &ana.token, &id).await,
        422,
        "UNPROCESSABLE_ENTITY",
    )
    .await;
    let msg = err["message"].as_str().unwrap();
    assert!(
        msg.contains("phoneNumberId") && msg.contains("accessToken"),
        "{msg}"
    );
    let id = app
        .create_integration(&ana, json!({"phoneNumberId": "5"}))
        .await;
    let err = assert_error(
        setup(&app, &ana.token, &id).await,
        422,
        "UNPROCESSABLE_ENTITY",
    )
    .await;
    assert!(!err["message"].as_str().unwrap().contains("phoneNumberId"));
    assert_eq!(
        events(&app, &ana.token, &id).await[0]["type"],
        "whatsapp.setup.failed"
    );
}

#[tokio::test]
async fn initiate_outside_the_window_needs_a_template_and_never_calls_meta() {
    let (app, graph) = app_with_graph().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&graph)
        .await;
    let ana = app.signup("Ana").await;
    let id = app
        .create_integration(&ana, json!({"phoneNumberId": "1065", "accessToken": TOKEN}))
        .await;
    let url = format!("/api/v1/integration/whatsapp/{id}/initiate");

    // Never wrote.
    let res = app
        .post(
            &url,
            &ana.token,
            &json!({"to": "+447700900123", "text": "hi"}),
        )
        .await;
    let err = assert_error(res, 422, "UNPROCESSABLE_ENTITY").await;
    assert!(
        err["message"].as_str().unwrap().contains("template"),
        "{err}"
    );
    // Wrote 25 hours ago.
    app.seed_conversation(&ana.tenant_id, &id, "447700900123", 25 * 60)
        .await;
    let res = app
        .post(
            &url,
            &ana.token,
            &json!({"to": "447700900123", "text": "hi"}),
        )
        .await;
    let err = assert_error(res, 422, "UNPROCESSABLE_ENTITY").await;
    assert!(
        err["message"].as_str().unwrap().contains("24-hour"),
        "{err}"
    );
    for body in [
        json!({"to": "12", "text": "hi"}),
        json!({"to": "+447700900123", "text": ""}),
        json!({"to": "+447700900123"}),
    ] {
        assert_error(app.post(&url, &ana.token, &body).await, 400, "BAD_REQUEST").await;
    }
}

#[tokio::test]
async fn initiate_inside_the_window_sends_text_and_stores_the_wamid() {
    let (app, graph) = app_with_graph().await;
    Mock::given(method("POST"))
        .and(path("/v23.0/1065/messages"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(body_json(json!({
            "messaging_product": "whatsapp", "recipient_type": "individual",
            "to": "16505076520", "type": "text",
            "text": {"preview_url": false, "body": "Your order shipped *today*"}
        })))
        .respond_with(
            ResponseTemplate::new(200).set_body_string(fixture("graph/send_message_success.json")),
        )
        .expect(1)
        .mount(&graph)
        .await;
    let ana = app.signup("Ana").await;
    let id = app
        .create_integration(&ana, json!({"phoneNumberId": "1065", "accessToken": TOKEN}))
        .await;
    let seeded = app
        .seed_conversation(&ana.tenant_id, &id, "16505076520", 30)
        .await;
    let res = app
        .post(
            &format!("/api/v1/integration/whatsapp/{id}/initiate"),
            &ana.token,
            &json!({"to": "+1 650 507 6520", "text": "Your order shipped *today*"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let message_id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let msg = app
        .fetch_json(
            &format!(
                "/api/v1/conversation/{}/message/{message_id}/fetch",
                seeded.conversation_id
            ),
            &ana.token,
        )
        .await;
    assert_eq!(msg["type"], "bot");
    assert_eq!(msg["deliveryStatus"], "sent");
    use sea_orm::EntityTrait;
    let row = parley::store::entities::message::Entity::find_by_id(message_id)
        .one(app.state.store().db())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.wamid.as_deref(),
        Some("wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA")
    );
}

#[tokio::test]
async fn a_failed_initiate_is_recorded_with_metas_error() {
    let (app, graph) = app_with_graph().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_string(fixture("graph/error_190_expired_token.json")),
        )
        .mount(&graph)
        .await;
    let ana = app.signup("Ana").await;
    let id = app
        .create_integration(&ana, json!({"phoneNumberId": "1065", "accessToken": TOKEN}))
        .await;
    let seeded = app
        .seed_conversation(&ana.tenant_id, &id, "16505076520", 5)
        .await;
    let res = app
        .post(
            &format!("/api/v1/integration/whatsapp/{id}/initiate"),
            &ana.token,
            &json!({"to": "16505076520", "text": "x"}),
        )
        .await;
    assert_error(res, 422, "UNPROCESSABLE_ENTITY").await;
    let list = app
        .fetch_json(
            &format!(
                "/api/v1/conversation/{}/message/list",
                seeded.conversation_id
            ),
            &ana.token,
        )
        .await;
    let failed = &list["items"][0];
    assert_eq!(failed["deliveryStatus"], "failed");
    assert_eq!(failed["errorCode"], 190);
    assert_eq!(
        events(&app, &ana.token, &id).await[0]["type"],
        "whatsapp.message.failed"
    );
}

#[tokio::test]
async fn delete_removes_the_integration_but_keeps_its_history() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let id = app
        .create_integration(&ana, json!({"name": "gone soon"}))
        .await;
    let seeded = app
        .seed_conversation(&ana.tenant_id, &id, "447700900123", 1)
        .await;

    let res = app
        .post(
            &format!("/api/v1/integration/whatsapp/{id}/delete"),
            &ana.token,
            &json!({}),
        )
        .await;
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"id": id}));
    assert_error(
        app.get(
            &format!("/api/v1/integration/whatsapp/{id}/fetch"),
            &ana.token,
        )
        .await,
        404,
        "NOT_FOUND",
    )
    .await;
    assert_error(
        app.post(
            &format!("/api/v1/integration/whatsapp/{id}/delete"),
            &ana.token,
            &json!({}),
        )
        .await,
        404,
        "NOT_FOUND",
    )
    .await;

    let conv = app
        .fetch_json(
            &format!("/api/v1/conversation/{}/fetch", seeded.conversation_id),
            &ana.token,
        )
        .await;
    assert_eq!(conv["whatsappIntegrationId"], id.as_str());
    app.fetch_json(
        &format!("/api/v1/contact/{}/fetch", seeded.contact_id),
        &ana.token,
    )
    .await;
    app.fetch_json(
        &format!(
            "/api/v1/conversation/{}/message/{}/fetch",
            seeded.conversation_id, seeded.message_id
        ),
        &ana.token,
    )
    .await;
    assert!(!events(&app, &ana.token, &id).await.is_empty());
}
