use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers::{assert_error, spawn_app, spawn_app_with};

#[tokio::test]
async fn providers_keep_their_key_secret_and_default_their_base_url() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let res = app
        .post(
            "/api/v1/provider/create",
            &ana.token,
            &json!({"name": "OpenAI", "type": "openai", "apiKey": "sk-live-abc123", "defaultModel": "gpt-4o-mini", "meta": {"env": "prod"}}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let got = app
        .fetch_json(&format!("/api/v1/provider/{id}/fetch"), &ana.token)
        .await;
    assert_eq!(got["apiKey"], "********");
    assert_eq!(got["type"], "openai");
    assert_eq!(got["baseUrl"], "https://api.openai.com/v1");
    assert_eq!(got["defaultModel"], "gpt-4o-mini");
    assert_eq!(got["system"], false);

    let res = app
        .post(
            "/api/v1/provider/create",
            &ana.token,
            &json!({"name": "Claude", "type": "anthropic"}),
        )
        .await;
    let claude = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let got = app
        .fetch_json(&format!("/api/v1/provider/{claude}/fetch"), &ana.token)
        .await;
    assert_eq!(got["baseUrl"], "https://api.anthropic.com");
    assert_eq!(got["apiKey"], Value::Null);

    // Sentinel keeps, null clears, meta merges.
    let url = format!("/api/v1/provider/{id}/update");
    app.post(&url, &ana.token, &json!({"apiKey": "********", "baseUrl": "http://localhost:11434/v1/", "meta": {"team": "ai"}})).await;
    let got = app
        .fetch_json(&format!("/api/v1/provider/{id}/fetch"), &ana.token)
        .await;
    assert_eq!(got["apiKey"], "********");
    assert_eq!(got["baseUrl"], "http://localhost:11434/v1");
    assert_eq!(got["meta"], json!({"env": "prod", "team": "ai"}));
    app.post(
        &url,
        &ana.token,
        &json!({"apiKey": null, "defaultModel": null}),
    )
    .await;
    let got = app
        .fetch_json(&format!("/api/v1/provider/{id}/fetch"), &ana.token)
        .await;
    assert_eq!(got["apiKey"], Value::Null);
    assert_eq!(got["defaultModel"], Value::Null);

    let list = app.fetch_json("/api/v1/provider/list", &ana.token).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains("sk-live-abc123"));

    for bad in [
        json!({"name": "x", "type": "cohere"}),
        json!({"name": "x"}),
        json!({"name": "x", "type": "openai", "baseUrl": "ftp://x"}),
        json!({"name": "x", "type": "openai", "defaultModel": "has space"}),
    ] {
        assert_error(
            app.post("/api/v1/provider/create", &ana.token, &bad).await,
            400,
            "BAD_REQUEST",
        )
        .await;
    }
    let res = app
        .post(
            &format!("/api/v1/provider/{id}/delete"),
            &ana.token,
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_error(
        app.get(&format!("/api/v1/provider/{id}/fetch"), &ana.token)
            .await,
        404,
        "NOT_FOUND",
    )
    .await;
}

#[tokio::test]
async fn server_default_providers_are_visible_read_only_and_keyless() {
    let app = spawn_app_with(|s| {
        s.openai_api_key = Some(SecretString::from("sk-server-openai-key"));
        s.anthropic_api_key = Some(SecretString::from("sk-ant-server-key"));
    })
    .await;
    let ana = app.signup("Ana").await;
    let own = app
        .post(
            "/api/v1/provider/create",
            &ana.token,
            &json!({"name": "Mine", "type": "openai"}),
        )
        .await
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let list = app.fetch_json("/api/v1/provider/list", &ana.token).await;
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec!["prv_system_openai", "prv_system_anthropic", own.as_str()]
    );
    let text = list.to_string();
    assert!(!text.contains("sk-server-openai-key") && !text.contains("sk-ant-server-key"));
    assert_eq!(list["items"][0]["system"], true);
    assert_eq!(list["items"][0]["apiKey"], "********");

    // Pages walk through them like any other row.
    let first = app
        .fetch_json("/api/v1/provider/list?take=2&order=asc", &ana.token)
        .await;
    let cursor = first["cursor"].as_str().unwrap();
    let second = app
        .fetch_json(
            &format!("/api/v1/provider/list?take=2&order=asc&cursor={cursor}"),
            &ana.token,
        )
        .await;
    assert_eq!(first["items"][0]["id"], own.as_str());
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert_eq!(second["items"][0]["id"], "prv_system_openai");

    let sys = app
        .fetch_json("/api/v1/provider/prv_system_anthropic/fetch", &ana.token)
        .await;
    assert_eq!(sys["type"], "anthropic");
    for route in ["update", "delete"] {
        let res = app
            .post(
                &format!("/api/v1/provider/prv_system_openai/{route}"),
                &ana.token,
                &json!({"name": "x"}),
            )
            .await;
        assert_error(res, 403, "NOT_AUTHORIZED").await;
    }
    // Bots may use them.
    let res = app
        .post(
            "/api/v1/bot/create",
            &ana.token,
            &json!({"name": "b", "providerId": "prv_system_openai", "model": "gpt-4o"}),
        )
        .await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_provider_in_use_cannot_be_deleted() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let p = app
        .post(
            "/api/v1/provider/create",
            &ana.token,
            &json!({"name": "P", "type": "openai"}),
        )
        .await
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.post(
        "/api/v1/bot/create",
        &ana.token,
        &json!({"name": "b", "providerId": p}),
    )
    .await;
    let res = app
        .post(
            &format!("/api/v1/provider/{p}/delete"),
            &ana.token,
            &json!({}),
        )
        .await;
    assert_error(res, 409, "CONFLICT").await;
}
