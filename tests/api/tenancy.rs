//! Tenant isolation: another tenant's ids answer 404, and lists never show its rows.

use serde_json::{Value, json};

use crate::helpers::{assert_error, spawn_app};

#[tokio::test]
async fn another_tenants_token_ids_are_not_found_and_never_listed() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let bob = app.signup("Bob").await;
    let (ana_token_id, ana_token) = app.create_token(&ana, "ana-ci", None).await;
    let (_, bob_api) = app.create_token(&bob, "bob-ci", None).await;

    // Bob, with a session or an API token, cannot touch Ana's token.
    for cred in [&bob.token, &bob_api] {
        let res = app
            .post(
                &format!("/api/v1/token/{ana_token_id}/delete"),
                cred,
                &json!({}),
            )
            .await;
        assert_error(res, 404, "NOT_FOUND").await;
        let list: Value = app
            .get("/api/v1/token/list?take=100", cred)
            .await
            .json()
            .await
            .unwrap();
        let text = list.to_string();
        assert!(!text.contains(&ana_token_id), "{text}");
        assert!(!text.contains("ana-ci"), "{text}");
    }
    // Ana's token still works: Bob's attempts changed nothing.
    let me: Value = app
        .get("/api/v1/auth/me", &ana_token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["tenantId"], ana.tenant_id.as_str());
    // And Bob's API token acts for Bob's tenant only.
    let me: Value = app
        .get("/api/v1/auth/me", &bob_api)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["tenantId"], bob.tenant_id.as_str());
}

#[tokio::test]
async fn the_tenant_scope_filters_every_query() {
    use parley::store::entities::api_token;
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let bob = app.signup("Bob").await;
    let (ana_id, _) = app.create_token(&ana, "a", None).await;
    let store = app.state.store();
    let bob_scope = store.scope(&bob.tenant_id);
    assert!(bob_scope.find::<api_token::Entity>(&ana_id).await.is_err());
    assert!(
        bob_scope
            .delete::<api_token::Entity>(&ana_id)
            .await
            .is_err()
    );
    let page = parley::store::Page {
        cursor: None,
        take: 100,
        order: Default::default(),
    };
    assert!(
        bob_scope
            .list::<api_token::Entity>(&page, sea_orm::Condition::all())
            .await
            .unwrap()
            .is_empty()
    );
    let ana_scope = store.scope(&ana.tenant_id);
    assert_eq!(
        ana_scope
            .find::<api_token::Entity>(&ana_id)
            .await
            .unwrap()
            .id,
        ana_id
    );
}

/// Every route that takes an id answers 404 when tenant B uses tenant A's id, and no list of
/// B's shows A's rows. Routes come from the OpenAPI document, so new ones are covered.
#[tokio::test]
async fn every_route_with_an_id_is_404_across_tenants() {
    use std::collections::HashMap;
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let bob = app.signup("Bob").await;
    let id_of = |v: Value| v["id"].as_str().unwrap().to_owned();
    let provider = id_of(
        app.post(
            "/api/v1/provider/create",
            &ana.token,
            &json!({"name": "P", "type": "openai", "apiKey": "k"}),
        )
        .await
        .json()
        .await
        .unwrap(),
    );
    let bot = id_of(
        app.post(
            "/api/v1/bot/create",
            &ana.token,
            &json!({"name": "B", "providerId": provider}),
        )
        .await
        .json()
        .await
        .unwrap(),
    );
    let wa = app
        .create_integration(
            &ana,
            json!({"botId": bot, "phoneNumberId": "1", "accessToken": "t"}),
        )
        .await;
    let seeded = app
        .seed_conversation(&ana.tenant_id, &wa, "447700900123", 1)
        .await;
    let (token, _) = app.create_token(&ana, "t", None).await;
    let ids: HashMap<&str, String> = HashMap::from([
        ("providerId", provider),
        ("botId", bot),
        ("whatsappIntegrationId", wa),
        ("contactId", seeded.contact_id),
        ("conversationId", seeded.conversation_id),
        ("messageId", seeded.message_id),
        ("tokenId", token),
    ]);

    let doc = serde_json::to_value(parley::http::openapi_document()).unwrap();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if op["security"] == json!([{}]) {
                continue;
            }
            // Streams (the live event log) never end on their own; they are checked in
            // dashboard.rs, including that another tenant's events never reach them.
            if op["responses"]["200"]["content"]
                .as_object()
                .is_some_and(|c| c.contains_key("application/jsonl"))
            {
                continue;
            }
            let mut filled = path.clone();
            let mut has_id = false;
            for (name, id) in &ids {
                let param = format!("{{{name}}}");
                if filled.contains(&param) {
                    filled = filled.replace(&param, id);
                    has_id = true;
                }
            }
            assert!(!filled.contains('{'), "no id for a parameter of {path}");
            let res = match method.as_str() {
                "get" => app.get(&filled, &bob.token).await,
                // A body every route accepts, so validation cannot answer before the lookup.
                _ => {
                    app.post(
                        &filled,
                        &bob.token,
                        &json!({"to": "+447700900123", "text": "hi"}),
                    )
                    .await
                }
            };
            let status = res.status().as_u16();
            let text = res.text().await.unwrap();
            if has_id {
                checked += 1;
                assert_eq!(status, 404, "{method} {path} as another tenant: {text}");
                assert!(text.contains("NOT_FOUND"), "{text}");
            } else if method == "get" {
                for id in ids.values() {
                    assert!(
                        !text.contains(id.as_str()),
                        "{path} shows another tenant's {id}: {text}"
                    );
                }
            }
        }
    }
    assert!(checked >= 20, "only {checked} routes with ids were checked");
    // Ana's rows are all still there and hers.
    for path in [
        format!("/api/v1/bot/{}/fetch", ids["botId"]),
        format!(
            "/api/v1/integration/whatsapp/{}/fetch",
            ids["whatsappIntegrationId"]
        ),
        format!(
            "/api/v1/conversation/{}/message/{}/fetch",
            ids["conversationId"], ids["messageId"]
        ),
        format!("/api/v1/contact/{}/fetch", ids["contactId"]),
        format!("/api/v1/provider/{}/fetch", ids["providerId"]),
    ] {
        assert_eq!(app.get(&path, &ana.token).await.status(), 200, "{path}");
    }
}
