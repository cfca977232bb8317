//! Contacts, conversations, messages and the event log, over rows the engine would write.

use serde_json::{Value, json};

use crate::helpers::{assert_error, spawn_app};

#[tokio::test]
async fn contacts_list_fetch_update_and_list_their_conversations() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let wa = app.create_integration(&ana, json!({})).await;
    let s = app
        .seed_conversation(&ana.tenant_id, &wa, "447700900123", 1)
        .await;

    let list = app.fetch_json("/api/v1/contact/list", &ana.token).await;
    assert_eq!(list["items"][0]["id"], s.contact_id.as_str());
    assert!(list["items"][0]["fingerprint"].is_string());
    let list = app
        .fetch_json("/api/v1/contact/list?meta.source=seed", &ana.token)
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let vip = format!("/api/v1/contact/{}/update", s.contact_id);
    app.post(&vip, &ana.token, &json!({"meta": {"vip": true}}))
        .await;
    let list = app
        .fetch_json("/api/v1/contact/list?meta.vip=true", &ana.token)
        .await;
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        1,
        "booleans match as text"
    );

    let url = format!("/api/v1/contact/{}/update", s.contact_id);
    let res = app
        .post(&url, &ana.token, &json!({"name": "Zoë Q", "email": "zoe@example.com", "meta": {"vip": true, "source": null}}))
        .await;
    assert_eq!(res.status(), 200);
    let got = app
        .fetch_json(
            &format!("/api/v1/contact/{}/fetch", s.contact_id),
            &ana.token,
        )
        .await;
    assert_eq!(got["name"], "Zoë Q");
    assert_eq!(got["email"], "zoe@example.com");
    assert_eq!(got["phone"], "+447700900123");
    assert_eq!(got["meta"], json!({"vip": true}));

    let convs = app
        .fetch_json(
            &format!("/api/v1/contact/{}/conversation/list", s.contact_id),
            &ana.token,
        )
        .await;
    assert_eq!(convs["items"][0]["id"], s.conversation_id.as_str());
    assert_eq!(convs["items"][0]["contactId"], s.contact_id.as_str());

    assert_error(
        app.post(&url, &ana.token, &json!({"name": "a\u{0}"})).await,
        400,
        "BAD_REQUEST",
    )
    .await;
    let res = app
        .post(
            &format!("/api/v1/contact/{}/delete", s.contact_id),
            &ana.token,
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_error(
        app.get(
            &format!("/api/v1/contact/{}/fetch", s.contact_id),
            &ana.token,
        )
        .await,
        404,
        "NOT_FOUND",
    )
    .await;
    // The conversation stays.
    app.fetch_json(
        &format!("/api/v1/conversation/{}/fetch", s.conversation_id),
        &ana.token,
    )
    .await;
}

#[tokio::test]
async fn conversations_show_their_messages_and_delete_with_them() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let wa = app.create_integration(&ana, json!({})).await;
    let s = app
        .seed_conversation(&ana.tenant_id, &wa, "447700900123", 1)
        .await;
    let other = app
        .seed_conversation(&ana.tenant_id, &wa, "447700900999", 1)
        .await;

    let list = app
        .fetch_json("/api/v1/conversation/list?order=asc", &ana.token)
        .await;
    assert_eq!(list["items"][0]["id"], s.conversation_id.as_str());
    let msgs = app
        .fetch_json(
            &format!("/api/v1/conversation/{}/message/list", s.conversation_id),
            &ana.token,
        )
        .await;
    let items = msgs["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["type"], "user");
    assert_eq!(items[0]["text"], "hello from whatsapp");
    assert_eq!(msgs["cursor"], s.message_id.as_str());

    // A message is only found under its own conversation.
    let res = app
        .get(
            &format!(
                "/api/v1/conversation/{}/message/{}/fetch",
                other.conversation_id, s.message_id
            ),
            &ana.token,
        )
        .await;
    assert_error(res, 404, "NOT_FOUND").await;

    let res = app
        .post(
            &format!("/api/v1/conversation/{}/delete", s.conversation_id),
            &ana.token,
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .get(
            &format!(
                "/api/v1/conversation/{}/message/{}/fetch",
                s.conversation_id, s.message_id
            ),
            &ana.token,
        )
        .await;
    assert_error(res, 404, "NOT_FOUND").await;
    use sea_orm::EntityTrait;
    let gone = parley::store::entities::message::Entity::find_by_id(s.message_id)
        .one(app.state.store().db())
        .await
        .unwrap();
    assert!(gone.is_none(), "messages go with their conversation");
}

#[tokio::test]
async fn the_event_log_filters_by_integration_conversation_type_and_level() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    let wa1 = app.create_integration(&ana, json!({})).await;
    let wa2 = app.create_integration(&ana, json!({})).await;
    let s1 = app
        .seed_conversation(&ana.tenant_id, &wa1, "447700900123", 1)
        .await;
    app.seed_conversation(&ana.tenant_id, &wa2, "447700900124", 1)
        .await;
    // A setup failure on wa2 adds an error event.
    app.post(
        &format!("/api/v1/integration/whatsapp/{wa2}/setup"),
        &ana.token,
        &json!({}),
    )
    .await;

    let ids = |v: &Value| v["items"].as_array().unwrap().len();
    let all = app.fetch_json("/api/v1/event/log/list", &ana.token).await;
    assert_eq!(ids(&all), 3);
    let one = app
        .fetch_json(
            &format!("/api/v1/event/log/list?whatsappIntegrationId={wa1}"),
            &ana.token,
        )
        .await;
    assert_eq!(ids(&one), 1);
    assert_eq!(
        one["items"][0]["conversationId"],
        s1.conversation_id.as_str()
    );
    assert_eq!(one["items"][0]["contactId"], s1.contact_id.as_str());
    let conv = app
        .fetch_json(
            &format!(
                "/api/v1/event/log/list?conversationId={}",
                s1.conversation_id
            ),
            &ana.token,
        )
        .await;
    assert_eq!(ids(&conv), 1);
    let errors = app
        .fetch_json("/api/v1/event/log/list?level=error", &ana.token)
        .await;
    assert_eq!(ids(&errors), 1);
    assert_eq!(errors["items"][0]["type"], "whatsapp.setup.failed");
    let typed = app
        .fetch_json(
            "/api/v1/event/log/list?type=whatsapp.message.received",
            &ana.token,
        )
        .await;
    assert_eq!(ids(&typed), 2);
    let e = &typed["items"][0];
    assert!(
        e["createdAt"].is_i64()
            && e["updatedAt"].is_i64()
            && e["id"].as_str().unwrap().starts_with("evt_")
    );
    assert_error(
        app.get("/api/v1/event/log/list?level=loud", &ana.token)
            .await,
        400,
        "BAD_REQUEST",
    )
    .await;
}
