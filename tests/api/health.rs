use crate::helpers::{redis_url, spawn_app, spawn_app_with};

#[tokio::test]
async fn healthz_and_readyz_answer_200_when_all_is_well() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz"] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["status"], "ok");
    }
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_a_sane_incoming_one_is_kept() {
    let app = spawn_app().await;
    let a = app.client.get(app.url("/healthz")).send().await.unwrap();
    let b = app.client.get(app.url("/nope")).send().await.unwrap();
    let ida = a.headers()["x-request-id"].to_str().unwrap().to_owned();
    let idb = b.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(ida.len(), 32);
    assert_ne!(ida, idb);

    let kept = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "trace-abc_123")
        .send()
        .await
        .unwrap();
    assert_eq!(kept.headers()["x-request-id"], "trace-abc_123");
    let replaced = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "bad id\twith junk")
        .send()
        .await
        .unwrap();
    assert_ne!(replaced.headers()["x-request-id"], "bad id\twith junk");
}

#[tokio::test]
async fn readyz_checks_redis_when_it_is_configured() {
    let Some(url) = redis_url() else {
        eprintln!("SKIPPED: TEST_REDIS_URL is not set");
        return;
    };
    let app = spawn_app_with(|s| s.redis_url = Some(url.into())).await;
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    app.state.redis_ping().await.unwrap();
}

#[tokio::test]
async fn readyz_is_503_when_redis_is_unreachable() {
    let app = spawn_app_with(|s| s.redis_url = Some("redis://127.0.0.1:1".to_owned().into())).await;
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 503);
}

#[tokio::test]
async fn the_docs_are_served_without_internet() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/docs")).send().await.unwrap();
    assert!(res.status().is_redirection());
    let page = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("cdn.") && !html.contains("unpkg"),
        "docs must not load from a CDN"
    );
    let js = app
        .client
        .get(app.url("/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), 200);
    assert!(js.bytes().await.unwrap().len() > 100_000);
    let init = app
        .client
        .get(app.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .unwrap();
    assert!(init.text().await.unwrap().contains("/api/v1/openapi.json"));
}

#[tokio::test]
async fn the_app_stops_cleanly_when_its_shutdown_future_resolves() {
    let app = spawn_app().await;
    let address = app.address.clone();
    app.stop().await.expect("clean stop");
    assert!(
        reqwest::get(format!("{address}/healthz")).await.is_err(),
        "still serving"
    );
}
