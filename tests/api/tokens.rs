use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

use crate::helpers::{assert_error, spawn_app};

#[tokio::test]
async fn an_api_token_authenticates_as_its_tenant_with_its_role() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let (id, token) = app.create_token(&ana, "ci", Some("viewer")).await;
    assert!(id.starts_with("tok_"));
    assert!(token.starts_with("prl_"));

    let me: Value = app
        .get("/api/v1/auth/me", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["tenantId"], ana.tenant_id.as_str());
    assert_eq!(me["tokenId"], id.as_str());
    assert_eq!(me["role"], "viewer");
}

#[tokio::test]
async fn the_token_list_never_shows_the_token_itself() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let (id, token) = app.create_token(&ana, "deploy", None).await;
    let res = app.get("/api/v1/token/list", &ana.token).await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert!(!text.contains(&token));
    let body: Value = serde_json::from_str(&text).unwrap();
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], id.as_str());
    assert_eq!(items[0]["name"], "deploy");
    assert_eq!(items[0]["role"], "owner");
    assert!(token.starts_with(items[0]["tokenPrefix"].as_str().unwrap()));
    assert!(items[0]["createdAt"].as_i64().unwrap() > 1_700_000_000_000);
}

#[tokio::test]
async fn tokens_are_stored_only_as_hashes() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let (id, token) = app.create_token(&ana, "ci", None).await;
    let row = parley::store::entities::api_token::Entity::find()
        .filter(parley::store::entities::api_token::Column::Id.eq(id))
        .one(app.state.store().db())
        .await
        .unwrap()
        .unwrap();
    assert_ne!(row.token_hash, token);
    assert!(!row.token_hash.contains(&token[4..]));
    assert_eq!(row.token_hash, parley::auth::token::hash(&token));
}

#[tokio::test]
async fn a_revoked_token_stops_working_at_once() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let (id, token) = app.create_token(&ana, "ci", None).await;
    assert_eq!(app.get("/api/v1/auth/me", &token).await.status(), 200);

    let res = app
        .post(
            &format!("/api/v1/token/{id}/delete"),
            &ana.token,
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"id": id}));

    assert_error(
        app.get("/api/v1/auth/me", &token).await,
        401,
        "NOT_AUTHENTICATED",
    )
    .await;
    let again = app
        .post(
            &format!("/api/v1/token/{id}/delete"),
            &ana.token,
            &json!({}),
        )
        .await;
    assert_error(again, 404, "NOT_FOUND").await;
}

#[tokio::test]
async fn a_token_cannot_outrank_its_creator_and_viewers_cannot_mint() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let (_, admin) = app.create_token(&ana, "admin", Some("admin")).await;
    let res = app
        .post(
            "/api/v1/token/create",
            &admin,
            &json!({"name": "x", "role": "owner"}),
        )
        .await;
    assert_error(res, 403, "NOT_AUTHORIZED").await;
    let res = app
        .post(
            "/api/v1/token/create",
            &admin,
            &json!({"name": "x", "role": "agent"}),
        )
        .await;
    assert_eq!(res.status(), 200);

    let (_, viewer) = app.create_token(&ana, "viewer", Some("viewer")).await;
    for res in [
        app.post("/api/v1/token/create", &viewer, &json!({"name": "x"}))
            .await,
        app.get("/api/v1/token/list", &viewer).await,
    ] {
        assert_error(res, 403, "NOT_AUTHORIZED").await;
    }
    let res = app
        .post(
            "/api/v1/token/create",
            &ana.token,
            &json!({"name": "x", "role": "root"}),
        )
        .await;
    assert_error(res, 400, "BAD_REQUEST").await;
}

#[tokio::test]
async fn token_lists_page_with_cursor_take_and_order() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(app.create_token(&ana, &format!("t{i}"), None).await.0);
    }
    for (order, expected) in [
        ("asc", ids.clone()),
        ("desc", ids.iter().rev().cloned().collect()),
    ] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/token/list?take=3&order={order}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let body: Value = app.get(&path, &ana.token).await.json().await.unwrap();
            let items = body["items"].as_array().unwrap();
            assert!(items.len() <= 3);
            if items.is_empty() {
                break;
            }
            seen.extend(items.iter().map(|i| i["id"].as_str().unwrap().to_owned()));
            cursor = seen.last().cloned();
        }
        assert_eq!(seen, expected, "order {order}");
    }
    let body: Value = app
        .get("/api/v1/token/list", &ana.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["items"][0]["id"],
        ids[6].as_str(),
        "default order is desc"
    );
}
