//! Every route that needs credentials answers 401 `NOT_AUTHENTICATED` to missing, malformed,
//! forged, expired and revoked ones. The routes come from the OpenAPI document, so new routes
//! are covered as soon as they exist.

use base64::Engine;
use jsonwebtoken::{EncodingKey, Header};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, spawn_app};

/// (method, path with ids filled in) of every route that needs credentials.
fn authenticated_routes() -> Vec<(String, String)> {
    let doc = serde_json::to_value(parley::http::openapi_document()).unwrap();
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let public = op["security"] == json!([{}]);
            if !public {
                let filled = path
                    .split('/')
                    .map(|seg| if seg.starts_with('{') { "x_0000" } else { seg })
                    .collect::<Vec<_>>()
                    .join("/");
                routes.push((method.clone(), filled));
            }
        }
    }
    assert!(
        routes.len() >= 4,
        "expected several authenticated routes, got {routes:?}"
    );
    routes
}

fn jwt(key: &[u8], sub: &str, tid: &str, exp_offset: i64) -> String {
    let now = chrono_now();
    let claims = json!({
        "sub": sub, "tid": tid, "aud": "parley-dashboard",
        "iat": now, "exp": now + exp_offset,
    });
    jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(key)).unwrap()
}

fn chrono_now() -> i64 {
    parley::time::now_ms() / 1000
}

async fn call(app: &TestApp, method: &str, path: &str, auth: Option<&str>) -> reqwest::Response {
    let mut req = match method {
        "get" => app.client.get(app.url(path)),
        "post" => app.client.post(app.url(path)).json(&json!({})),
        other => panic!("unexpected method {other}"),
    };
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn every_authenticated_route_rejects_bad_credentials_with_401() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let secret = app
        .settings
        .jwt_secret
        .as_ref()
        .unwrap()
        .expose_secret()
        .to_owned();
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret)
        .unwrap();

    let expired = jwt(&key, &ana.user_id, &ana.tenant_id, -3600);
    let forged = jwt(
        b"another key entirely, 32 bytes!!",
        &ana.user_id,
        &ana.tenant_id,
        3600,
    );
    let unknown_user = jwt(&key, "usr_nobody", &ana.tenant_id, 3600);
    let alg_none = {
        let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.",
            b64(json!({"alg": "none", "typ": "JWT"})),
            b64(
                json!({"sub": ana.user_id, "tid": ana.tenant_id, "aud": "parley-dashboard", "exp": chrono_now() + 3600})
            )
        )
    };
    let (id, revoked) = app.create_token(&ana, "gone", None).await;
    app.post(
        &format!("/api/v1/token/{id}/delete"),
        &ana.token,
        &json!({}),
    )
    .await;

    let bad: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("empty bearer", Some("Bearer ".into())),
        ("wrong scheme", Some(format!("Basic {}", ana.token))),
        ("garbage", Some("Bearer not-a-token".into())),
        (
            "unknown api token",
            Some("Bearer prl_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into()),
        ),
        ("revoked api token", Some(format!("Bearer {revoked}"))),
        ("expired jwt", Some(format!("Bearer {expired}"))),
        ("forged jwt", Some(format!("Bearer {forged}"))),
        ("alg none jwt", Some(format!("Bearer {alg_none}"))),
        (
            "jwt of a user that does not exist",
            Some(format!("Bearer {unknown_user}")),
        ),
    ];
    for (method, path) in authenticated_routes() {
        for (what, header) in &bad {
            let res = call(&app, &method, &path, header.as_deref()).await;
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap();
            assert_eq!(
                (status, body["code"].as_str()),
                (401, Some("NOT_AUTHENTICATED")),
                "{method} {path} with {what}: {body}"
            );
        }
        // And the good session gets past authentication.
        let res = call(&app, &method, &path, Some(&format!("Bearer {}", ana.token))).await;
        assert_ne!(
            res.status(),
            401,
            "{method} {path} rejected a valid session"
        );
    }
    let res = call(
        &app,
        "get",
        "/api/v1/auth/me",
        Some(&format!("Bearer {expired}")),
    )
    .await;
    let body = assert_error(res, 401, "NOT_AUTHENTICATED").await;
    assert!(
        body["message"].as_str().unwrap().contains("expired"),
        "{body}"
    );
}
