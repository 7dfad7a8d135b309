//! Authentication and tenant isolation: an organization key sees and changes only its own
//! organization; everything else answers 404, and no token answers 401.

#![allow(clippy::unwrap_used)]

mod common;

use common::{AppOptions, OPERATOR_TOKEN, TestDatabase, spawn_app};
use serde_json::json;

both_engines!(organization_keys_see_only_their_own_organization, |engine| async move {
    let db = TestDatabase::new(engine).await;
    let app = spawn_app(&db, AppOptions::default()).await;
    let org_a = app.create_organization("A").await;
    let org_b = app.create_organization("B").await;
    let key = app
        .post_as(
            OPERATOR_TOKEN,
            &format!("/api/v1/organizations/{org_a}/api-keys"),
            json!({}),
        )
        .await;
    assert_eq!(key.status, 201, "{}", key.body);
    let key_a = key.body["key"].as_str().unwrap().to_owned();
    assert_eq!(key.body["organization_id"], org_a.as_str());
    let (event_b, tts_b) = app.create_event(&org_b, &[("B-GA", 100, 10)]).await;

    // Its own organization: allowed, with the organization implied.
    let own = app.get_as(&key_a, &format!("/api/v1/organizations/{org_a}")).await;
    assert_eq!((own.status, own.body["name"].as_str()), (200, Some("A")));
    let event_a = app
        .post_as(
            &key_a,
            "/api/v1/events",
            json!({ "name": "A night", "starts_at": "2030-01-01T20:00:00Z", "currency": "usd" }),
        )
        .await;
    assert_eq!(event_a.status, 201, "{}", event_a.body);
    assert_eq!(
        (
            event_a.body["organization_id"].as_str(),
            event_a.body["currency"].as_str()
        ),
        (Some(org_a.as_str()), Some("USD"))
    );
    let event_a = event_a.body["id"].as_str().unwrap().to_owned();
    let tt_a = app
        .post_as(
            &key_a,
            &format!("/api/v1/events/{event_a}/ticket-types"),
            json!({ "name": "GA", "price_cents": 500, "capacity": 5 }),
        )
        .await;
    assert_eq!(tt_a.status, 201);
    let tt_a = tt_a.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.patch_as(
            &key_a,
            &format!("/api/v1/ticket-types/{tt_a}"),
            json!({ "capacity": 6 })
        )
        .await
        .status,
        200
    );

    // Another organization's resources, and operator-only routes: 404, and nothing changes.
    let forbidden = [
        app.get_as(&key_a, &format!("/api/v1/organizations/{org_b}")).await,
        app.post_as(&key_a, "/api/v1/organizations", json!({ "name": "Mine now" }))
            .await,
        app.post_as(&key_a, &format!("/api/v1/organizations/{org_a}/api-keys"), json!({}))
            .await,
        app.post_as(&key_a, &format!("/api/v1/organizations/{org_b}/api-keys"), json!({}))
            .await,
        app.post_as(
            &key_a,
            "/api/v1/events",
            json!({ "organization_id": org_b, "name": "X", "starts_at": "2030-01-01T20:00:00Z", "currency": "EUR" }),
        )
        .await,
        app.post_as(
            &key_a,
            &format!("/api/v1/events/{event_b}/ticket-types"),
            json!({ "name": "X", "price_cents": 1, "capacity": 1 }),
        )
        .await,
        app.patch_as(
            &key_a,
            &format!("/api/v1/ticket-types/{}", tts_b[0]),
            json!({ "capacity": 0 }),
        )
        .await,
        app.get_as(&key_a, "/api/v1/admin/stats/reservations").await,
        app.get_as(&key_a, "/api/v1/admin/jobs/runs").await,
        app.post_as(&key_a, "/api/v1/admin/jobs/expire-holds/run", json!({}))
            .await,
    ];
    for (i, answer) in forbidden.iter().enumerate() {
        assert_eq!(
            (answer.status, answer.code()),
            (404, "not_found"),
            "case {i}: {}",
            answer.body
        );
    }
    assert_eq!(
        app.inventory(&event_b, &tts_b[0]).await,
        (0, 0, 10),
        "B's ticket type is untouched"
    );
    let events_b = app.get(&format!("/api/v1/events?organization_id={org_b}")).await;
    assert_eq!(
        events_b.body["data"].as_array().unwrap().len(),
        1,
        "no event was created in B"
    );

    // The operator sees everything.
    assert_eq!(
        app.get_as(OPERATOR_TOKEN, &format!("/api/v1/organizations/{org_a}"))
            .await
            .status,
        200
    );
    assert_eq!(
        app.get_as(OPERATOR_TOKEN, &format!("/api/v1/organizations/{org_b}"))
            .await
            .status,
        200
    );
});

both_engines!(
    missing_or_wrong_tokens_get_401_on_every_authenticated_route,
    |engine| async move {
        let db = TestDatabase::new(engine).await;
        let app = spawn_app(&db, AppOptions::default()).await;
        let org = app.create_organization("A").await;
        let (event, tts) = app.create_event(&org, &[("GA", 100, 10)]).await;
        let routes: Vec<(reqwest::Method, String)> = vec![
            (reqwest::Method::POST, "/api/v1/organizations".into()),
            (reqwest::Method::GET, format!("/api/v1/organizations/{org}")),
            (reqwest::Method::POST, format!("/api/v1/organizations/{org}/api-keys")),
            (reqwest::Method::POST, "/api/v1/events".into()),
            (reqwest::Method::POST, format!("/api/v1/events/{event}/ticket-types")),
            (reqwest::Method::PATCH, format!("/api/v1/ticket-types/{}", tts[0])),
            (reqwest::Method::GET, "/api/v1/admin/stats/reservations".into()),
            (reqwest::Method::GET, "/api/v1/admin/jobs/runs".into()),
            (reqwest::Method::POST, "/api/v1/admin/jobs/expire-holds/run".into()),
        ];
        let revoked_looking = "key_00000000000000000000000000000000_".to_owned() + &"0".repeat(64);
        for (method, path) in &routes {
            for auth in [
                None,
                Some("Bearer wrong"),
                Some("Basic dXNlcjpwYXNz"),
                Some("Bearer "),
                Some(revoked_looking.as_str()),
            ] {
                let mut request = app
                    .client
                    .request(method.clone(), app.url(path))
                    .json(&json!({ "name": "x" }));
                if let Some(auth) = auth {
                    let value = if auth.starts_with("key_") {
                        format!("Bearer {auth}")
                    } else {
                        auth.to_owned()
                    };
                    request = request.header("authorization", value);
                }
                let answer = app.send(request).await;
                assert_eq!(
                    (answer.status, answer.code()),
                    (401, "unauthorized"),
                    "{method} {path} with {auth:?}"
                );
            }
        }
        assert_eq!(app.inventory(&event, &tts[0]).await, (0, 0, 10));
    }
);
