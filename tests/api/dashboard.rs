//! The dashboard's server side: static files with the SPA fallback, and the endpoints its
//! pages use (usage, overview, try-it, the live event stream).

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use wiremock::Mock;
use wiremock::matchers::{method, path};

use crate::engine::{EchoOpenAi, env, eventually, text_webhook};
use crate::helpers::{assert_error, spawn_app_with};
use crate::webhooks::post_signed;

#[tokio::test]
async fn the_dashboard_is_served_with_a_fallback_that_never_shadows_the_server() {
    // Arrange: a built dashboard.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("assets")).unwrap();
    std::fs::write(
        dir.path().join("index.html"),
        "<!doctype html><title>Parley</title>",
    )
    .unwrap();
    std::fs::write(dir.path().join("assets/app-1a2b.js"), "console.log(1)").unwrap();
    let root = dir.path().to_path_buf();
    let app = spawn_app_with(|s| s.web_admin_dir = root).await;
    let get = |p: &str| app.client.get(app.url(p)).send();
    let page = |p: &str| {
        app.client
            .get(app.url(p))
            .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
            .send()
    };

    // The app and its client routes get index.html when a browser asks for a page.
    for p in ["/", "/bots/bot_123", "/sandbox"] {
        let res = page(p).await.unwrap();
        assert_eq!(res.status(), 200, "{p}");
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert_eq!(res.headers()["cache-control"], "no-cache");
        assert!(res.text().await.unwrap().contains("<title>Parley</title>"));
    }
    // An API client asking for an unknown path gets the JSON 404, not the app.
    assert_error(get("/bots/bot_123").await.unwrap(), 404, "NOT_FOUND").await;
    let res = get("/assets/app-1a2b.js").await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(
        res.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    // A missing file is a 404, not the app; so are escapes from the folder.
    assert_error(get("/assets/missing.js").await.unwrap(), 404, "NOT_FOUND").await;
    assert_error(
        get("/assets/../../etc/passwd.txt").await.unwrap(),
        404,
        "NOT_FOUND",
    )
    .await;
    // Server paths keep their own answers.
    assert_error(
        get("/api/v1/no/such/route").await.unwrap(),
        401,
        "NOT_AUTHENTICATED",
    )
    .await;
    assert_error(get("/api").await.unwrap(), 404, "NOT_FOUND").await;
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/api/v1/openapi.json").await.unwrap().status(), 200);
    assert_error(
        app.client.post(app.url("/bots")).send().await.unwrap(),
        404,
        "NOT_FOUND",
    )
    .await;
}

#[tokio::test]
async fn without_a_build_the_root_says_how_to_build_it() {
    let app = spawn_app_with(|s| s.web_admin_dir = "/nonexistent/parley-dist".into()).await;
    let res = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = res.text().await.unwrap();
    assert!(
        page.contains("npm run build") && page.contains("PARLEY_WEB_ADMIN_DIR"),
        "{page}"
    );
    // The API is unaffected.
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn usage_overview_and_try_it_count_what_the_bot_did() {
    let e = env("openai", |_| {}).await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(EchoOpenAi {
            prefix: "echo: ".into(),
        })
        .mount(&e.llm)
        .await;
    // Before anything happened: zeros, and 90 daily points.
    let series = e
        .app
        .fetch_json("/api/v1/usage/series/fetch", &e.ana.token)
        .await;
    assert_eq!(series["messages"].as_array().unwrap().len(), 90);
    assert!(
        series["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["total"] == 0)
    );

    // One exchange through the pipeline.
    post_signed(
        &e.app,
        &e.integration,
        &text_webhook("wamid.u.1", "447700900009", "hi"),
    )
    .await;
    eventually("the reply", || async {
        let o = e
            .app
            .fetch_json("/api/v1/usage/overview/fetch", &e.ana.token)
            .await;
        o["replies"] == 1
    })
    .await;
    let o = e
        .app
        .fetch_json("/api/v1/usage/overview/fetch?days=7", &e.ana.token)
        .await;
    assert_eq!(o["days"].as_array().unwrap().len(), 7);
    assert_eq!(o["messages"], 1);
    assert_eq!(o["failed"], 0);
    let today = o["days"].as_array().unwrap().last().unwrap();
    assert_eq!(today["messages"], 1);
    assert_eq!(today["replies"], 1);
    assert!(o["p95ReplyMs"].as_i64().is_some_and(|ms| ms >= 0), "{o}");
    assert_eq!(o["tokensByBot"][0]["botId"], e.bot.as_str());
    assert_eq!(o["tokensByBot"][0]["name"], "Echo");
    assert_eq!(o["tokensByBot"][0]["inputTokens"], 11);
    assert_eq!(o["tokensByBot"][0]["outputTokens"], 7);
    assert_error(
        e.app
            .get("/api/v1/usage/overview/fetch?days=0", &e.ana.token)
            .await,
        400,
        "BAD_REQUEST",
    )
    .await;

    let usage = e
        .app
        .fetch_json(&format!("/api/v1/bot/{}/usage/fetch", e.bot), &e.ana.token)
        .await;
    assert_eq!(
        usage,
        json!({"tokens": 18, "conversations": 1, "messages": 2})
    );
    let empty = e
        .app
        .fetch_json(
            &format!(
                "/api/v1/bot/{}/usage/fetch?from=2020-01-01&to=2020-02-01T00:00:00Z",
                e.bot
            ),
            &e.ana.token,
        )
        .await;
    assert_eq!(
        empty,
        json!({"tokens": 0, "conversations": 0, "messages": 0})
    );
    assert_error(
        e.app
            .get(
                &format!("/api/v1/bot/{}/usage/fetch?from=yesterday", e.bot),
                &e.ana.token,
            )
            .await,
        400,
        "BAD_REQUEST",
    )
    .await;

    // Try it: the bot's model answers through the server; nothing is stored.
    let res = e
        .app
        .post(
            &format!("/api/v1/bot/{}/try", e.bot),
            &e.ana.token,
            &json!({"messages": [{"type": "user", "text": "ping"}]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let tried: Value = res.json().await.unwrap();
    assert_eq!(tried["text"], "echo: ping");
    assert_eq!(tried["usage"]["outputTokens"], 7);
    assert_error(
        e.app
            .post(
                &format!("/api/v1/bot/{}/try", e.bot),
                &e.ana.token,
                &json!({"messages": []}),
            )
            .await,
        400,
        "BAD_REQUEST",
    )
    .await;
    // Another tenant sees none of it.
    let bo = e.app.signup("Bo").await;
    for p in [format!("/api/v1/bot/{}/usage/fetch", e.bot)] {
        assert_error(e.app.get(&p, &bo.token).await, 404, "NOT_FOUND").await;
    }
    assert_error(
        e.app
            .post(
                &format!("/api/v1/bot/{}/try", e.bot),
                &bo.token,
                &json!({"messages": [{"type": "user", "text": "x"}]}),
            )
            .await,
        404,
        "NOT_FOUND",
    )
    .await;
    let theirs = e
        .app
        .fetch_json("/api/v1/usage/overview/fetch", &bo.token)
        .await;
    assert_eq!(theirs["messages"], 0);
    assert_eq!(theirs["tokensByBot"], json!([]));
}

#[tokio::test]
async fn the_event_stream_replays_history_then_delivers_new_events_of_this_tenant_only() {
    let e = env("openai", |_| {}).await;
    let bo = e.app.signup("Bo").await;
    // An event before subscribing: a failed setup (no credentials).
    let first = e
        .app
        .create_integration(&e.ana, json!({"name": "bare"}))
        .await;
    e.app
        .post(
            &format!("/api/v1/integration/whatsapp/{first}/setup"),
            &e.ana.token,
            &json!({}),
        )
        .await;
    let res = e
        .app
        .post(
            "/api/v1/event/log/subscribe",
            &e.ana.token,
            &json!({"historyLength": 5, "level": "error"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/jsonl")
    );
    let mut stream = res.bytes_stream();
    let mut buf = String::new();
    let mut next_item = async || -> Value {
        loop {
            if let Some(i) = buf.find('\n') {
                let line: String = buf.drain(..=i).collect();
                if !line.trim().is_empty() {
                    return serde_json::from_str(&line).unwrap();
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await
                .expect("an event within 10 s")
                .expect("the stream stays open")
                .unwrap();
            buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    };
    let replayed = next_item().await;
    assert_eq!(replayed["type"], "item");
    assert_eq!(replayed["data"]["type"], "whatsapp.setup.failed");
    assert_eq!(replayed["data"]["whatsappIntegrationId"], first.as_str());

    // Bo's events never reach Ana's stream; Ana's info events are filtered out; her next
    // error event arrives live.
    let theirs = e.app.create_integration(&bo, json!({"name": "bo"})).await;
    e.app
        .post(
            &format!("/api/v1/integration/whatsapp/{theirs}/setup"),
            &bo.token,
            &json!({}),
        )
        .await;
    let second = e
        .app
        .create_integration(&e.ana, json!({"name": "second"}))
        .await;
    e.app
        .post(
            &format!("/api/v1/integration/whatsapp/{second}/setup"),
            &e.ana.token,
            &json!({}),
        )
        .await;
    let live = next_item().await;
    assert_eq!(live["data"]["whatsappIntegrationId"], second.as_str());
    assert_eq!(live["data"]["level"], "error");

    assert_error(
        e.app
            .post(
                "/api/v1/event/log/subscribe",
                &e.ana.token,
                &json!({"level": "loud"}),
            )
            .await,
        400,
        "BAD_REQUEST",
    )
    .await;
    assert_error(
        e.app
            .post(
                "/api/v1/event/log/subscribe",
                &e.ana.token,
                &json!({"historyLength": 10001}),
            )
            .await,
        400,
        "BAD_REQUEST",
    )
    .await;
}
