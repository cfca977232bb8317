//! The real npm `@chatbotkit/sdk` against a running Parley (tests/sdk/compat.test.mjs).

use std::process::Command;

use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::spawn_app_with;

const GOOD_PHONE: &str = "106540352242922";
const GOOD_TOKEN: &str = "EAAG-good-token";

#[tokio::test]
async fn the_chatbotkit_sdk_works_against_parley() {
    let sdk_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk");
    let ready = std::path::Path::new(sdk_dir)
        .join("node_modules/@chatbotkit/sdk")
        .exists()
        && Command::new("node").arg("--version").output().is_ok();
    if !ready {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("node and tests/sdk/node_modules are required on CI (run npm ci in tests/sdk)");
        }
        eprintln!(
            "!!! SKIPPED: SDK compatibility test (no node or tests/sdk/node_modules; run `npm ci` in tests/sdk)"
        );
        return;
    }
    let graph = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/v23.0/{GOOD_PHONE}")))
        .and(header(
            "authorization",
            format!("Bearer {GOOD_TOKEN}").as_str(),
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": GOOD_PHONE, "display_phone_number": "+1 555 0100"})),
        )
        .mount(&graph)
        .await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(401).set_body_string(crate::helpers::fixture(
                "graph/error_190_expired_token.json",
            )),
        )
        .mount(&graph)
        .await;
    let uri = graph.uri();
    let app = spawn_app_with(|s| s.whatsapp_graph_url = uri.parse().unwrap()).await;
    let ana = app.signup("Ana").await;
    let bob = app.signup("Bob").await;
    let (_, token_a) = app.create_token(&ana, "sdk", None).await;
    let (_, token_b) = app.create_token(&bob, "sdk", None).await;
    let provider: Value = app
        .post(
            "/api/v1/provider/create",
            &ana.token,
            &json!({"name": "P", "type": "openai"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let seeded_wa = app
        .create_integration(&ana, json!({"name": "seeded"}))
        .await;
    let seeded = app
        .seed_conversation(&ana.tenant_id, &seeded_wa, "447700900123", 1)
        .await;

    let out = tokio::process::Command::new("node")
        .args(["--test", "--test-reporter=spec", "compat.test.mjs"])
        .current_dir(sdk_dir)
        .env("PARLEY_URL", &app.address)
        .env("PARLEY_TOKEN", &token_a)
        .env("PARLEY_TOKEN_B", &token_b)
        .env("PARLEY_PROVIDER_ID", provider["id"].as_str().unwrap())
        .env("PARLEY_GOOD_PHONE_NUMBER_ID", GOOD_PHONE)
        .env("PARLEY_GOOD_ACCESS_TOKEN", GOOD_TOKEN)
        .env("PARLEY_CONTACT_ID", &seeded.contact_id)
        .env("PARLEY_CONVERSATION_ID", &seeded.conversation_id)
        .env("PARLEY_MESSAGE_ID", &seeded.message_id)
        .env("PARLEY_SEEDED_INTEGRATION_ID", &seeded_wa)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "SDK compatibility failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
