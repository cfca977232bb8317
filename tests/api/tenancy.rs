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
