//! Bad input of every kind answers in the `{"message","code"}` shape with the right status.

use serde_json::json;

use crate::helpers::{assert_error, spawn_app};

#[tokio::test]
async fn malformed_json_is_a_400_in_the_error_shape() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    for body in ["{", "{\"name\": }", "not json", "{\"name\": \"x\"", "\u{0}"] {
        let res = app
            .client
            .post(app.url("/api/v1/token/create"))
            .bearer_auth(&ana.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let err = assert_error(res, 400, "BAD_REQUEST").await;
        assert!(err["message"].as_str().unwrap().contains("JSON"), "{err}");
    }
}

#[tokio::test]
async fn wrong_types_name_the_offending_field() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let res = app
        .post("/api/v1/token/create", &ana.token, &json!({"name": 42}))
        .await;
    let err = assert_error(res, 400, "BAD_REQUEST").await;
    assert!(err["message"].as_str().unwrap().contains("name"), "{err}");

    let res = app
        .post(
            "/api/v1/token/create",
            &ana.token,
            &json!({"name": "x", "role": ["admin"]}),
        )
        .await;
    let err = assert_error(res, 400, "BAD_REQUEST").await;
    assert!(err["message"].as_str().unwrap().contains("role"), "{err}");

    let res = app
        .post("/api/v1/token/create", &ana.token, &json!([]))
        .await;
    assert_error(res, 400, "BAD_REQUEST").await;
    let res = app
        .post("/api/v1/token/create", &ana.token, &json!({}))
        .await;
    let err = assert_error(res, 400, "BAD_REQUEST").await;
    assert!(err["message"].as_str().unwrap().contains("name"), "{err}");
}

#[tokio::test]
async fn a_body_without_a_json_content_type_is_refused() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let res = app
        .client
        .post(app.url("/api/v1/token/create"))
        .bearer_auth(&ana.token)
        .header("content-type", "text/plain")
        .body(r#"{"name":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "BAD_REQUEST").await;
    let res = app
        .client
        .post(app.url("/api/v1/token/create"))
        .bearer_auth(&ana.token)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "BAD_REQUEST").await;
}

#[tokio::test]
async fn oversized_bodies_answer_413_in_the_error_shape() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let big = json!({"name": "x".repeat(parley::http::json::MAX_JSON_BODY + 10)});
    let res = app.post("/api/v1/token/create", &ana.token, &big).await;
    assert_error(res, 413, "BAD_REQUEST").await;

    // Without a Content-Length (chunked), the limit still holds while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        std::iter::once(Ok(b"{\"name\":\"".to_vec()))
            .chain((0..20).map(|_| Ok(vec![b'x'; 64 * 1024])))
            .chain(std::iter::once(Ok(b"\"}".to_vec())))
            .collect();
    let res = app
        .client
        .post(app.url("/api/v1/token/create"))
        .bearer_auth(&ana.token)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_error(res, 413, "BAD_REQUEST").await;
}

#[tokio::test]
async fn bad_list_parameters_are_400s() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    for query in [
        "take=0",
        "take=101",
        "take=-5",
        "take=abc",
        "order=sideways",
        &format!("cursor={}", "c".repeat(65)),
    ] {
        let res = app
            .get(&format!("/api/v1/token/list?{query}"), &ana.token)
            .await;
        assert_error(res, 400, "BAD_REQUEST").await;
    }
}

#[tokio::test]
async fn hostile_strings_are_refused_or_stored_verbatim_never_interpreted() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let hostile = [
        "'; DROP TABLE tenant; --",
        "<script>alert(1)</script>",
        "Robert\"); DELETE FROM api_token WHERE (\"1\"=\"1",
        "💥 emoji ✓ ünïcödé",
        "%00%27",
    ];
    for name in hostile {
        let res = app
            .post("/api/v1/token/create", &ana.token, &json!({"name": name}))
            .await;
        assert_eq!(res.status(), 200, "{name}");
    }
    let list: serde_json::Value = app
        .get("/api/v1/token/list?take=100", &ana.token)
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    for name in hostile {
        assert!(names.contains(&name), "{name} not stored verbatim");
    }
    // Control characters are refused outright.
    let res = app
        .post(
            "/api/v1/token/create",
            &ana.token,
            &json!({"name": "a\u{1b}[31mred"}),
        )
        .await;
    assert_error(res, 400, "BAD_REQUEST").await;
    // And an id that is SQL goes nowhere.
    let res = app
        .post("/api/v1/token/' OR '1'='1/delete", &ana.token, &json!({}))
        .await;
    assert_error(res, 404, "NOT_FOUND").await;
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_answer_in_the_error_shape() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let res = app.client.get(app.url("/nope")).send().await.unwrap();
    assert_error(res, 404, "NOT_FOUND").await;
    let res = app.get("/api/v1/nope", &ana.token).await;
    assert_error(res, 404, "NOT_FOUND").await;
    // Under /api/v1, callers without credentials learn nothing about which routes exist.
    let res = app
        .client
        .get(app.url("/api/v1/nope"))
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "NOT_AUTHENTICATED").await;
    // A public route called with the wrong method.
    let res = app.get("/api/v1/auth/signup", &ana.token).await;
    assert_error(res, 404, "NOT_FOUND").await;
    let res = app.client.delete(app.url("/healthz")).send().await.unwrap();
    let status = res.status().as_u16();
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(status == 404 || status == 405, "{status}");
    assert!(
        body["code"].is_string() && body["message"].is_string(),
        "{body}"
    );
}

#[tokio::test]
async fn internal_details_never_leak_when_the_database_is_gone() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    app.state.store().close().await;
    let res = app.get("/api/v1/token/list", &ana.token).await;
    assert_eq!(
        res.headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("5")
    );
    let body = assert_error(res, 503, "SERVICE_UNAVAILABLE").await;
    let message = body["message"].as_str().unwrap().to_lowercase();
    for leak in ["sqlx", "pool", "sqlite", "postgres", "select"] {
        assert!(!message.contains(leak), "{message}");
    }
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_error(res, 503, "SERVICE_UNAVAILABLE").await;
}
