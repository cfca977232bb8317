use serde_json::{Value, json};

use crate::helpers::{PASSWORD, assert_error, spawn_app, spawn_app_with};

#[tokio::test]
async fn signup_returns_a_session_that_identifies_the_new_owner() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    assert!(ana.tenant_id.starts_with("ten_"));
    assert!(ana.user_id.starts_with("usr_"));

    let me: Value = app
        .get("/api/v1/auth/me", &ana.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["tenantId"], ana.tenant_id.as_str());
    assert_eq!(me["userId"], ana.user_id.as_str());
    assert_eq!(me["role"], "owner");
    assert_eq!(me["email"], ana.email.as_str());
}

#[tokio::test]
async fn login_with_the_right_password_returns_a_working_session() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let res = app
        .post_anon(
            "/api/v1/auth/login",
            &json!({"email": ana.email.to_uppercase(), "password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["userId"], ana.user_id.as_str());
    assert_eq!(body["tenantId"], ana.tenant_id.as_str());
    let token = body["token"].as_str().unwrap();
    assert_eq!(app.get("/api/v1/auth/me", token).await.status(), 200);
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_email_answer_exactly_alike() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let wrong = app
        .post_anon(
            "/api/v1/auth/login",
            &json!({"email": ana.email, "password": "nope-nope-nope"}),
        )
        .await;
    let wrong = assert_error(wrong, 401, "NOT_AUTHENTICATED").await;
    let unknown = app
        .post_anon(
            "/api/v1/auth/login",
            &json!({"email": "nobody@example.com", "password": "nope-nope-nope"}),
        )
        .await;
    let unknown = assert_error(unknown, 401, "NOT_AUTHENTICATED").await;
    assert_eq!(wrong, unknown);
}

#[tokio::test]
async fn repeated_failures_are_slowed_down_for_known_and_unknown_emails() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    for email in [ana.email.as_str(), "ghost@example.com"] {
        for _ in 0..parley::auth::throttle::FREE_FAILURES {
            let res = app
                .post_anon(
                    "/api/v1/auth/login",
                    &json!({"email": email, "password": "wrong-wrong"}),
                )
                .await;
            assert_eq!(res.status(), 401);
        }
        // Even the right password is refused while locked.
        let res = app
            .post_anon(
                "/api/v1/auth/login",
                &json!({"email": email, "password": PASSWORD}),
            )
            .await;
        let retry_after: u64 = res.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(retry_after >= 1);
        assert_error(res, 429, "TOO_MANY_REQUESTS").await;
    }
    // Another email is not affected.
    let bob = app.signup("Bob").await;
    let res = app
        .post_anon(
            "/api/v1/auth/login",
            &json!({"email": bob.email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn signup_with_a_taken_email_is_a_conflict() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let res = app
        .post_anon(
            "/api/v1/auth/signup",
            &json!({"email": ana.email, "password": PASSWORD, "name": "Other"}),
        )
        .await;
    assert_error(res, 409, "CONFLICT").await;
}

#[tokio::test]
async fn signup_validates_its_fields() {
    let app = spawn_app().await;
    let cases = [
        json!({"email": "not-an-email", "password": PASSWORD, "name": "A"}),
        json!({"email": "a@example.com", "password": "short", "name": "A"}),
        json!({"email": "a@example.com", "password": PASSWORD, "name": "   "}),
        json!({"email": "a@example.com", "password": PASSWORD, "name": "a\u{0007}b"}),
        json!({"email": "a@example.com", "password": PASSWORD, "name": "x".repeat(500)}),
        json!({"email": "a@example.com", "password": "p".repeat(10_000), "name": "A"}),
        json!({"email": "a@example.com", "password": PASSWORD}),
    ];
    for body in cases {
        let res = app.post_anon("/api/v1/auth/signup", &body).await;
        assert_error(res, 400, "BAD_REQUEST").await;
    }
}

#[tokio::test]
async fn signup_is_refused_when_closed() {
    let app = spawn_app_with(|s| s.signup = parley::config::Signup::Closed).await;
    let res = app
        .post_anon(
            "/api/v1/auth/signup",
            &json!({"email": "a@example.com", "password": PASSWORD, "name": "A"}),
        )
        .await;
    assert_error(res, 403, "NOT_AUTHORIZED").await;
}

#[tokio::test]
async fn passwords_are_stored_as_argon2id_hashes() {
    use sea_orm::EntityTrait;
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let row = parley::store::entities::user::Entity::find_by_id(ana.user_id)
        .one(app.state.store().db())
        .await
        .unwrap()
        .unwrap();
    let hash = row.password_hash.unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains(PASSWORD));
}
