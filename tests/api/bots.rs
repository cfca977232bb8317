use serde_json::{Value, json};

use crate::helpers::{assert_error, spawn_app};

#[tokio::test]
async fn bots_round_trip_chatbotkit_fields_and_providers() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let provider = app
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
    let body = json!({
        "name": "Support", "description": "Answers questions", "backstory": "You are helpful.\nBe brief.",
        "model": "gpt-4o-mini/temperature=0.2/maxTokens=512", "providerId": provider,
        "datasetId": "ds_1", "skillsetId": "sk_1", "privacy": true, "moderation": true,
        "visibility": "protected", "meta": {"tier": "gold"}
    });
    let res = app.post("/api/v1/bot/create", &ana.token, &body).await;
    assert_eq!(res.status(), 200);
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let got = app
        .fetch_json(&format!("/api/v1/bot/{id}/fetch"), &ana.token)
        .await;
    for key in [
        "name",
        "description",
        "backstory",
        "model",
        "providerId",
        "datasetId",
        "skillsetId",
        "privacy",
        "moderation",
        "visibility",
        "meta",
    ] {
        assert_eq!(got[key], body[key], "{key}");
    }
    assert!(got["createdAt"].as_i64().unwrap() > 1_700_000_000_000);

    let res = app
        .post(&format!("/api/v1/bot/{id}/update"), &ana.token, &json!({"description": null, "meta": {"tier": null, "x": 1}, "model": "claude-3-5-haiku"}))
        .await;
    assert_eq!(res.status(), 200);
    let got = app
        .fetch_json(&format!("/api/v1/bot/{id}/fetch"), &ana.token)
        .await;
    assert_eq!(got["description"], Value::Null);
    assert_eq!(got["name"], "Support");
    assert_eq!(got["meta"], json!({"x": 1}));
    assert_eq!(got["model"], "claude-3-5-haiku");

    // Filters compare the text of values, the same on SQLite and PostgreSQL.
    let list = app
        .fetch_json("/api/v1/bot/list?meta.x=1", &ana.token)
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let list = app
        .fetch_json("/api/v1/bot/list?meta.x=2", &ana.token)
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
    let list = app.fetch_json("/api/v1/bot/list", &ana.token).await;
    assert_eq!(list["items"][0]["id"], id.as_str());
    assert_eq!(list["cursor"], id.as_str());
}

#[tokio::test]
async fn a_malformed_model_is_a_400_that_names_the_problem() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    for (model, needle) in [
        ("gpt-4o/temperature", "temperature"),
        ("gpt-4o/temperature=9", "temperature"),
        ("gpt-4o/maxTokens=-1", "maxTokens"),
        ("gpt-4o/flavour=spicy", "flavour"),
        ("", "name"),
    ] {
        let res = app
            .post(
                "/api/v1/bot/create",
                &ana.token,
                &json!({"name": "b", "model": model}),
            )
            .await;
        let err = assert_error(res, 400, "BAD_REQUEST").await;
        assert!(
            err["message"].as_str().unwrap().contains(needle),
            "{model}: {err}"
        );
    }
    let id = app
        .post("/api/v1/bot/create", &ana.token, &json!({"name": "b"}))
        .await
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = app
        .post(
            &format!("/api/v1/bot/{id}/update"),
            &ana.token,
            &json!({"model": "x/topP=2"}),
        )
        .await;
    assert_error(res, 400, "BAD_REQUEST").await;
    let res = app
        .post(
            "/api/v1/bot/create",
            &ana.token,
            &json!({"visibility": "everyone"}),
        )
        .await;
    assert_error(res, 400, "BAD_REQUEST").await;
}

#[tokio::test]
async fn an_unknown_provider_is_a_404() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let bob = app.signup("Bob").await;
    let bobs = app
        .post(
            "/api/v1/provider/create",
            &bob.token,
            &json!({"name": "P", "type": "openai"}),
        )
        .await
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for provider in ["prv_nope", bobs.as_str(), "prv_system_openai"] {
        let res = app
            .post(
                "/api/v1/bot/create",
                &ana.token,
                &json!({"providerId": provider}),
            )
            .await;
        assert_error(res, 404, "NOT_FOUND").await;
    }
}

#[tokio::test]
async fn deleting_a_bot_unlinks_its_integrations() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let bot = app
        .post("/api/v1/bot/create", &ana.token, &json!({"name": "b"}))
        .await
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let wa = app.create_integration(&ana, json!({"botId": bot})).await;
    let res = app
        .post(&format!("/api/v1/bot/{bot}/delete"), &ana.token, &json!({}))
        .await;
    assert_eq!(res.status(), 200);
    let got = app
        .fetch_json(
            &format!("/api/v1/integration/whatsapp/{wa}/fetch"),
            &ana.token,
        )
        .await;
    assert_eq!(got["botId"], Value::Null);
    assert_error(
        app.get(&format!("/api/v1/bot/{bot}/fetch"), &ana.token)
            .await,
        404,
        "NOT_FOUND",
    )
    .await;
}
