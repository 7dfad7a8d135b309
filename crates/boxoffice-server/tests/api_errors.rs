//! The error store over HTTP, on both engines: reports are scrubbed before they are stored,
//! grouped, counted, listed and resolved; a regression reopens its group.

#![allow(clippy::unwrap_used)]

mod common;

use common::{AppOptions, OPERATOR_TOKEN, TestDatabase, spawn_app};
use serde_json::json;

both_engines!(
    reported_errors_are_scrubbed_grouped_and_resolvable,
    |engine| async move {
        let db = TestDatabase::new(engine).await;
        let app = spawn_app(&db, AppOptions::default()).await;
        let report = |message: &str, severity: &str| {
            json!({
                "severity": severity,
                "message": message,
                "component": "checkout",
                "stack_trace": "at pay (checkout.js:42:7)\nat onClick (button.js:10:1)",
                "context": {
                    "customer": { "email": "ana@example.org", "card": "4242 4242 4242 4242" },
                    "headers": { "Authorization": "Bearer sk_live_abcdefghijklmnop", "cookie": "session=abc" },
                    "password": "hunter2",
                    "ip_address": "203.0.113.9",
                    "note": "order 123 for ana@example.org from 198.51.100.7"
                }
            })
        };
        let first = app
            .post_as(
                OPERATOR_TOKEN,
                "/api/v1/errors",
                report("Payment failed for order 1234 (ana@example.org)", "error"),
            )
            .await;
        assert_eq!(first.status, 202, "{}", first.body);
        assert_eq!(first.body["id"].as_str().unwrap().len(), 32);
        let second = app
            .post_as(
                OPERATOR_TOKEN,
                "/api/v1/errors",
                report("Payment failed for order 98765 (bo@example.com)", "critical"),
            )
            .await;
        assert_eq!(second.status, 202);
        let other = app
            .post_as(
                OPERATOR_TOKEN,
                "/api/v1/errors",
                report("Seat map did not load", "warning"),
            )
            .await;
        assert_eq!(other.status, 202);

        let groups = app.get_as(OPERATOR_TOKEN, "/api/v1/admin/errors").await;
        assert_eq!(groups.status, 200, "{}", groups.body);
        let data = groups.body["data"].as_array().unwrap();
        assert_eq!(data.len(), 2, "same error, other ids and addresses: one group");
        let payment = data.iter().find(|g| g["count"] == 2).unwrap();
        assert_eq!(
            (payment["severity"].as_str(), payment["component"].as_str()),
            (Some("critical"), Some("checkout"))
        );
        let group_id = payment["id"].as_str().unwrap();

        let detail = app
            .get_as(OPERATOR_TOKEN, &format!("/api/v1/admin/errors/{group_id}"))
            .await;
        assert_eq!(detail.body["events"].as_array().unwrap().len(), 2);
        let stored = detail.body.to_string();
        for secret in [
            "ana@example.org",
            "bo@example.com",
            "4242 4242 4242 4242",
            "sk_live_abcdefghijklmnop",
            "hunter2",
            "203.0.113.9",
            "198.51.100.7",
            "session=abc",
        ] {
            assert!(!stored.contains(secret), "{secret} was stored: {stored}");
        }
        assert!(
            detail.body["events"][0]["request_id"].is_string(),
            "the request id is kept"
        );

        let critical = app
            .get_as(OPERATOR_TOKEN, "/api/v1/admin/errors?severity=critical")
            .await;
        assert_eq!(critical.body["data"].as_array().unwrap().len(), 1);
        let resolved = app
            .post_as(
                OPERATOR_TOKEN,
                &format!("/api/v1/admin/errors/{group_id}/resolve"),
                json!({}),
            )
            .await;
        assert_eq!((resolved.status, &resolved.body["resolved"]), (200, &json!(true)));
        let open = app.get_as(OPERATOR_TOKEN, "/api/v1/admin/errors?resolved=false").await;
        assert_eq!(open.body["data"].as_array().unwrap().len(), 1);
        app.post_as(
            OPERATOR_TOKEN,
            "/api/v1/errors",
            report("Payment failed for order 5 (cy@example.net)", "error"),
        )
        .await;
        let reopened = app
            .get_as(OPERATOR_TOKEN, &format!("/api/v1/admin/errors/{group_id}"))
            .await;
        assert_eq!(
            (reopened.body["resolved"].as_bool(), reopened.body["count"].as_i64()),
            (Some(false), Some(3)),
            "a regression reopens"
        );
        let one = app.get_as(OPERATOR_TOKEN, "/api/v1/admin/errors?limit=1").await;
        assert_eq!(
            (one.body["data"].as_array().unwrap().len(), &one.body["has_more"]),
            (1, &json!(true))
        );
    }
);

both_engines!(error_reports_are_validated_and_scoped, |engine| async move {
    let db = TestDatabase::new(engine).await;
    let app = spawn_app(&db, AppOptions::default()).await;
    let org = app.create_organization("Org").await;
    let key = app
        .post_as(
            OPERATOR_TOKEN,
            &format!("/api/v1/organizations/{org}/api-keys"),
            json!({}),
        )
        .await;
    let key = key.body["key"].as_str().unwrap().to_owned();
    let mine = app
        .post_as(
            &key,
            "/api/v1/errors",
            json!({ "severity": "error", "message": "TypeError: x is undefined" }),
        )
        .await;
    assert_eq!(mine.status, 202, "an organization key may report");
    for (body, status) in [
        (json!({ "severity": "loud", "message": "x" }), 422),
        (json!({ "severity": "error", "message": "   " }), 422),
        (json!({ "severity": "error" }), 422),
        (json!({ "severity": 3, "message": "x" }), 422),
    ] {
        let answer = app.post_as(OPERATOR_TOKEN, "/api/v1/errors", body.clone()).await;
        assert_eq!(answer.status, status, "{body}: {}", answer.body);
    }
    let anonymous = app
        .post("/api/v1/errors", json!({ "severity": "error", "message": "x" }))
        .await;
    assert_eq!(anonymous.status, 401);
    let groups = app.get_as(OPERATOR_TOKEN, "/api/v1/admin/errors").await;
    let scopes: Vec<_> = groups.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["scope"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(scopes, [format!("org:{org}")]);
    assert_eq!(
        app.get_as(&key, "/api/v1/admin/errors").await.status,
        404,
        "operator only"
    );
    assert_eq!(
        app.get_as(
            OPERATOR_TOKEN,
            "/api/v1/admin/errors/grp_00000000000000000000000000000000"
        )
        .await
        .status,
        404
    );
    assert_eq!(
        app.get_as(OPERATOR_TOKEN, "/api/v1/admin/errors?severity=loud")
            .await
            .status,
        400
    );
    let long = "y".repeat(40_000);
    let cut = app
        .post_as(
            OPERATOR_TOKEN,
            "/api/v1/errors",
            json!({ "severity": "info", "message": long }),
        )
        .await;
    assert_eq!(cut.status, 202, "long messages are kept, cut to 16 KiB");
});
