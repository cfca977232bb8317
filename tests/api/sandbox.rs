//! The built-in sandbox: Parley plays Meta. The phone's messages go through the real callback
//! (signed webhooks), replies come back through Parley's own Graph endpoint, and the mock LLM
//! is the only fake.

use serde_json::{Value, json};
use wiremock::Mock;
use wiremock::matchers::{method, path};

use crate::engine::{EchoOpenAi, Env, env, eventually};
use crate::helpers::assert_error;

async fn sandbox_env() -> Env {
    let e = env("openai", |_| {}).await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(EchoOpenAi {
            prefix: "echo: ".into(),
        })
        .mount(&e.llm)
        .await;
    e
}

async fn phone(e: &Env) -> Vec<Value> {
    e.app
        .fetch_json(
            "/api/v1/sandbox/message/list?order=asc&take=100",
            &e.ana.token,
        )
        .await["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn out_texts(e: &Env) -> Vec<String> {
    phone(e)
        .await
        .iter()
        .filter(|m| m["direction"] == "out")
        .filter_map(|m| m["body"]["text"]["body"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn the_sandbox_phone_chats_with_the_bot_through_the_real_callback() {
    let e = sandbox_env().await;
    // Arrange: no sandbox yet, then one linked to the bot.
    assert_error(
        e.app.get("/api/v1/sandbox/fetch", &e.ana.token).await,
        404,
        "NOT_FOUND",
    )
    .await;
    let res = e
        .app
        .post(
            "/api/v1/sandbox/create",
            &e.ana.token,
            &json!({"botId": e.bot}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let sandbox: Value = res.json().await.unwrap();
    let integration = sandbox["whatsappIntegrationId"]
        .as_str()
        .unwrap()
        .to_owned();
    // Creating again is idempotent: one sandbox per tenant.
    let again: Value = e
        .app
        .post("/api/v1/sandbox/create", &e.ana.token, &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["whatsappIntegrationId"], integration.as_str());
    // The integration is an ordinary one, flagged, with masked secrets.
    let fetched = e
        .app
        .fetch_json(
            &format!("/api/v1/integration/whatsapp/{integration}/fetch"),
            &e.ana.token,
        )
        .await;
    assert_eq!(fetched["sandbox"], true);
    assert_eq!(fetched["accessToken"], "********");
    assert_eq!(fetched["appSecret"], "********");
    assert_eq!(fetched["status"], "ready");

    // Act: the phone says hello.
    let res = e
        .app
        .post(
            "/api/v1/sandbox/message/send",
            &e.ana.token,
            &json!({"type": "text", "text": "hello sandbox"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let sent: Value = res.json().await.unwrap();
    assert!(sent["wamid"].as_str().unwrap().starts_with("wamid."));

    // Assert: the reply arrived at the sandbox's Graph endpoint, as Cloud API JSON.
    eventually("the sandbox reply", || async {
        out_texts(&e).await == vec!["echo: hello sandbox".to_owned()]
    })
    .await;
    let msgs = phone(&e).await;
    let out = msgs.iter().find(|m| m["direction"] == "out").unwrap();
    assert_eq!(out["body"]["messaging_product"], "whatsapp");
    assert_eq!(out["body"]["to"], "15550100001");
    assert_eq!(out["type"], "text");
    // The engine marked the phone's message read (and showed "typing").
    let inbound = msgs.iter().find(|m| m["direction"] == "in").unwrap();
    assert!(
        matches!(inbound["status"].as_str(), Some("read" | "typing")),
        "{inbound}"
    );
    // The real pipeline stored a conversation; the statuses the sandbox posted back as Meta
    // moved the reply to delivered.
    let convs = e
        .app
        .fetch_json("/api/v1/conversation/list", &e.ana.token)
        .await;
    let conv = convs["items"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(convs["items"][0]["botId"], e.bot.as_str());
    eventually("delivered", || async {
        let m = e
            .app
            .fetch_json(
                &format!("/api/v1/conversation/{conv}/message/list?order=asc"),
                &e.ana.token,
            )
            .await;
        m["items"][1]["deliveryStatus"] == "delivered"
    })
    .await;

    // A tap on a reply button goes in as an interactive button_reply with its id and title.
    let res = e
        .app
        .post(
            "/api/v1/sandbox/message/send",
            &e.ana.token,
            &json!({"type": "button_reply", "id": "opt_yes", "title": "Yes please", "context": out["wamid"]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let tap: Value = res.json().await.unwrap();
    assert_eq!(tap["body"]["interactive"]["button_reply"]["id"], "opt_yes");
    assert_eq!(tap["body"]["context"]["id"], out["wamid"]);
    eventually("the reply to the tap", || async {
        out_texts(&e).await.len() == 2
    })
    .await;
    // The model reads the tap with the button's title and id, and what it answered.
    let reply = &out_texts(&e).await[1];
    assert!(
        reply.contains(r#"tapped the button "Yes please" (id: opt_yes)"#),
        "{reply}"
    );
    assert!(
        reply.contains("replying to: \"echo: hello sandbox\""),
        "{reply}"
    );
}

#[tokio::test]
async fn the_sandbox_refuses_bad_input_and_other_tenants() {
    let e = sandbox_env().await;
    assert_error(
        e.app
            .post(
                "/api/v1/sandbox/message/send",
                &e.ana.token,
                &json!({"type": "text", "text": "before any sandbox"}),
            )
            .await,
        404,
        "NOT_FOUND",
    )
    .await;
    e.app
        .post(
            "/api/v1/sandbox/create",
            &e.ana.token,
            &json!({"botId": e.bot}),
        )
        .await;
    for bad in [
        json!({"type": "text", "text": "  "}),
        json!({"type": "button_reply", "id": "x", "title": "a title longer than twenty"}),
        json!({"type": "location", "latitude": 91.0, "longitude": 0.0}),
        json!({"type": "sticker"}),
    ] {
        assert_error(
            e.app
                .post("/api/v1/sandbox/message/send", &e.ana.token, &bad)
                .await,
            400,
            "BAD_REQUEST",
        )
        .await;
    }
    // Another tenant has no sandbox, and cannot link one to Ana's bot.
    let bo = e.app.signup("Bo").await;
    assert_error(
        e.app.get("/api/v1/sandbox/fetch", &bo.token).await,
        404,
        "NOT_FOUND",
    )
    .await;
    assert_error(
        e.app
            .post(
                "/api/v1/sandbox/create",
                &bo.token,
                &json!({"botId": e.bot}),
            )
            .await,
        404,
        "NOT_FOUND",
    )
    .await;
    // Unauthenticated: the dashboard routes need credentials.
    assert_error(
        e.app.get("/api/v1/sandbox/message/list", "nope").await,
        401,
        "NOT_AUTHENTICATED",
    )
    .await;
}

#[tokio::test]
async fn the_sandbox_graph_endpoint_answers_like_meta() {
    let e = sandbox_env().await;
    let sandbox: Value = e
        .app
        .post(
            "/api/v1/sandbox/create",
            &e.ana.token,
            &json!({"botId": e.bot}),
        )
        .await
        .json()
        .await
        .unwrap();
    let integration = sandbox["whatsappIntegrationId"].as_str().unwrap();
    let fetched = e
        .app
        .fetch_json(
            &format!("/api/v1/integration/whatsapp/{integration}/fetch"),
            &e.ana.token,
        )
        .await;
    let phone_id = fetched["phoneNumberId"].as_str().unwrap();
    let url = e
        .app
        .url(&format!("/api/v1/sandbox/graph/v23.0/{phone_id}/messages"));
    // A wrong token gets Meta's 190 error object, which Parley's Graph client understands.
    let res = e
        .app
        .client
        .post(&url)
        .bearer_auth("EAAG-not-the-token")
        .json(&json!({"messaging_product": "whatsapp", "to": "15550100001", "type": "text", "text": {"body": "x"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], 190);
    assert_eq!(body["error"]["type"], "OAuthException");
    // Setup runs against the sandbox's Graph endpoint and succeeds.
    let res = e
        .app
        .post(
            &format!("/api/v1/integration/whatsapp/{integration}/setup"),
            &e.ana.token,
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    // Initiate sends through it too; a number other than the phone's is refused as Meta
    // refuses numbers outside a test number's list.
    e.app
        .post(
            "/api/v1/sandbox/message/send",
            &e.ana.token,
            &json!({"type": "text", "text": "hi"}),
        )
        .await;
    eventually("a reply", || async { !out_texts(&e).await.is_empty() }).await;
    let res = e
        .app
        .post(
            &format!("/api/v1/integration/whatsapp/{integration}/initiate"),
            &e.ana.token,
            &json!({"to": "+15550100001", "text": "a note from the operator"}),
        )
        .await;
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    eventually("the initiated message", || async {
        out_texts(&e)
            .await
            .contains(&"a note from the operator".to_owned())
    })
    .await;
}
