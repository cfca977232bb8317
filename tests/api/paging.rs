//! Cursor paging stays exact while rows are inserted and deleted concurrently.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::helpers::spawn_app;

#[tokio::test]
async fn paging_through_250_records_under_concurrent_writes_has_no_duplicates_or_gaps() {
    let app = spawn_app().await;
    let ana = app.signup("Ana").await;
    // Created straight in the database: 300 HTTP calls would only slow the test down.
    let store = app.state.store();
    let mut stable = HashSet::new();
    let mut victims = Vec::new();
    for i in 0..300 {
        use parley::store::entities::bot;
        use sea_orm::{ActiveModelTrait, ActiveValue::Set};
        let id = parley::ids::new_id("bot");
        let now = parley::time::now_ms();
        bot::ActiveModel {
            id: Set(id.clone()),
            tenant_id: Set(ana.tenant_id.clone()),
            alias: Set(None),
            name: Set(Some(format!("b{i}"))),
            description: Set(None),
            backstory: Set(None),
            model: Set(None),
            provider_id: Set(None),
            dataset_id: Set(None),
            skillset_id: Set(None),
            blueprint_id: Set(None),
            privacy: Set(false),
            moderation: Set(false),
            visibility: Set("private".into()),
            vision: Set(false),
            show_reactions: Set(false),
            meta: Set(json!({})),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(store.db())
        .await
        .unwrap();
        // Every sixth row will be deleted while paging; the other 250 stay throughout.
        if i % 6 == 5 {
            victims.push(id);
        } else {
            stable.insert(id);
        }
    }
    assert_eq!(stable.len(), 250);

    for order in ["desc", "asc"] {
        // Writers: insert new bots and delete victims while the reader pages.
        let writer = {
            let client = app.client.clone();
            let base = app.address.clone();
            let token = ana.token.clone();
            let victims = victims.clone();
            tokio::spawn(async move {
                for (i, victim) in victims.iter().enumerate() {
                    client
                        .post(format!("{base}/api/v1/bot/create"))
                        .bearer_auth(&token)
                        .json(&json!({"name": format!("new{i}")}))
                        .send()
                        .await
                        .unwrap();
                    client
                        .post(format!("{base}/api/v1/bot/{victim}/delete"))
                        .bearer_auth(&token)
                        .json(&json!({}))
                        .send()
                        .await
                        .unwrap();
                }
            })
        };
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/bot/list?take=7&order={order}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page: Value = app.fetch_json(&path, &ana.token).await;
            let items = page["items"].as_array().unwrap();
            if items.is_empty() {
                break;
            }
            seen.extend(items.iter().map(|i| i["id"].as_str().unwrap().to_owned()));
            cursor = page["cursor"].as_str().map(str::to_owned);
            assert_eq!(cursor.as_deref(), seen.last().map(String::as_str));
            tokio::task::yield_now().await;
        }
        writer.await.unwrap();
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "{order}: duplicates");
        let missing: Vec<&String> = stable.iter().filter(|id| !unique.contains(id)).collect();
        assert!(missing.is_empty(), "{order}: gaps: {missing:?}");
        let mut sorted = seen.clone();
        sorted.sort();
        if order == "desc" {
            sorted.reverse();
        }
        assert_eq!(seen, sorted, "{order}: out of order");
        // Recreate the victims for the next pass.
        victims.clear();
        let list: Value = app
            .fetch_json("/api/v1/bot/list?take=100", &ana.token)
            .await;
        for item in list["items"].as_array().unwrap() {
            let id = item["id"].as_str().unwrap().to_owned();
            if !stable.contains(&id) {
                victims.push(id);
            }
        }
        victims.truncate(50);
    }
}
