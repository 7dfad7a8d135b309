//! What every request gets: request ids, the error body for axum's own rejections, rate
//! limits on public routes, health, metrics and the OpenAPI description.

#![allow(clippy::unwrap_used)]

mod common;

use common::{AppOptions, OPERATOR_TOKEN, TestDatabase, spawn_app};
use serde_json::json;

both_engines!(request_ids_are_echoed_or_generated, |engine| async move {
    let db = TestDatabase::new(engine).await;
    let app = spawn_app(&db, AppOptions::default()).await;
    let mine = app
        .send(app.client.get(app.url("/healthz")).header("x-request-id", "trace-42"))
        .await;
    assert_eq!(mine.headers["x-request-id"], "trace-42");
    let generated = app.get("/api/v1/events").await;
    let id = generated.headers["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    let hostile = app
        .send(
            app.client
                .get(app.url("/healthz"))
                .header("x-request-id", "a".repeat(300)),
        )
        .await;
    assert_eq!(hostile.headers["x-request-id"].len(), 32, "an oversized id is replaced");
});

both_engines!(
    unknown_routes_and_methods_answer_with_the_error_body,
    |engine| async move {
        let db = TestDatabase::new(engine).await;
        let app = spawn_app(&db, AppOptions::default()).await;
        let missing = app.get("/api/v1/nothing-here").await;
        assert_eq!((missing.status, missing.code()), (404, "not_found"));
        let wrong_method = app.send(app.client.put(app.url("/api/v1/reservations"))).await;
        assert_eq!((wrong_method.status, wrong_method.code()), (405, "invalid_request"));
    }
);

both_engines!(public_routes_are_rate_limited_per_address, |engine| async move {
    let db = TestDatabase::new(engine).await;
    let app = spawn_app(
        &db,
        AppOptions {
            rate_limit_per_minute: 5,
            ..Default::default()
        },
    )
    .await;
    for _ in 0..5 {
        assert_eq!(app.get("/api/v1/events").await.status, 200);
    }
    let limited = app.get("/api/v1/events").await;
    assert_eq!((limited.status, limited.code()), (429, "rate_limited"));
    let retry_after: u64 = limited.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=12).contains(&retry_after), "{retry_after}");
    assert_eq!(
        app.post("/api/v1/reservations", json!({})).await.status,
        429,
        "holds share the budget"
    );
    // Operator and health routes are not public buyer routes.
    assert_eq!(
        app.get_as(OPERATOR_TOKEN, "/api/v1/admin/stats/reservations")
            .await
            .status,
        200
    );
    assert_eq!(app.get("/healthz").await.status, 200);
});

both_engines!(health_metrics_and_openapi, |engine| async move {
    let db = TestDatabase::new(engine).await;
    let app = spawn_app(&db, AppOptions::default()).await;
    assert_eq!(app.get("/healthz").await.body["status"], "ok");
    assert_eq!(app.get("/readyz").await.body["status"], "ready");

    let org = app.create_organization("Org").await;
    let (event, tts) = app.create_event(&org, &[("GA", 100, 1)]).await;
    assert_eq!(app.hold(&event, &[(&tts[0], 1)]).await.status, 201);
    assert_eq!(app.hold(&event, &[(&tts[0], 1)]).await.status, 409);
    app.post_as(OPERATOR_TOKEN, "/api/v1/admin/jobs/expire-holds/run", json!({}))
        .await;
    let metrics = app.metrics().await;
    for expected in [
        "boxoffice_holds_created_total 1",
        "boxoffice_holds_sold_out_total 1",
        "boxoffice_job_runs_total{job=\"expire-holds\",outcome=\"succeeded\"} 1",
        "boxoffice_holds_expired_total 0",
        "boxoffice_http_requests_total{method=\"POST\",route=\"/api/v1/reservations\",status=\"409\"} 1",
        "boxoffice_http_request_duration_seconds_count{route=\"/api/v1/reservations\"} 2",
    ] {
        assert!(metrics.contains(expected), "missing {expected:?} in\n{metrics}");
    }

    let spec = app.get("/api/openapi.json").await;
    assert_eq!(spec.status, 200);
    assert!(spec.body["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/api/v1/organizations",
        "/api/v1/organizations/{org_id}/api-keys",
        "/api/v1/events",
        "/api/v1/events/{event_id}/ticket-types",
        "/api/v1/ticket-types/{ticket_type_id}",
        "/api/v1/reservations",
        "/api/v1/reservations/{reservation_id}",
        "/api/v1/admin/stats/reservations",
        "/api/v1/admin/jobs/runs",
        "/api/v1/admin/jobs/{job}/run",
        "/api/v1/reservations/{reservation_id}/payment-intent",
        "/api/v1/orders/{order_id}",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(
            spec.body["paths"][path].is_object(),
            "{path} is missing from the OpenAPI description"
        );
    }
    assert!(spec.body["paths"]["/api/v1/reservations/{reservation_id}"]["delete"].is_object());
});

#[tokio::test]
async fn readyz_reports_an_unreachable_database() {
    // A PostgreSQL URL whose server is gone: the app starts against a real database, then
    // the database is dropped out from under it.
    let db = TestDatabase::new(common::Engine::Postgres).await;
    let app = spawn_app(&db, AppOptions::default()).await;
    assert_eq!(app.get("/readyz").await.status, 200);
    let admin = std::env::var("BOXOFFICE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let name = db.url.rsplit('/').next().unwrap().to_owned();
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await.unwrap();
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .unwrap();
    let down = app.get("/readyz").await;
    assert_eq!(down.status, 503, "{}", down.body);
    assert_eq!(down.code(), "internal");
    assert!(down.headers.contains_key("retry-after"));
    let holds = app.get("/api/v1/events").await;
    assert!(holds.status >= 500 && holds.body["error"]["code"].is_string());
}

#[tokio::test]
async fn readyz_reports_a_database_that_stops_answering_within_seconds() {
    // A database that stops answering without closing its connections (a frozen host, a
    // network partition): the app reaches PostgreSQL through a proxy that can stop
    // forwarding bytes while keeping every connection open.
    let db = TestDatabase::new(common::Engine::Postgres).await;
    let upstream = db.postgres_address();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap().to_string();
    let frozen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let frozen_in_proxy = frozen.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = tokio::net::TcpStream::connect(&upstream).await.unwrap();
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            for (mut from, mut to) in [(client_read, server_write), (server_read, client_write)] {
                let frozen = frozen_in_proxy.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buffer = vec![0; 16 * 1024];
                    loop {
                        let n = match from.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        while frozen.load(std::sync::atomic::Ordering::SeqCst) {
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                        if to.write_all(&buffer[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        }
    });
    let app = spawn_app(&db.postgres_through(&proxy), AppOptions::default()).await;
    assert_eq!(app.get("/readyz").await.status, 200);

    frozen.store(true, std::sync::atomic::Ordering::SeqCst);
    let asked = std::time::Instant::now();
    let down = app.get("/readyz").await;
    let waited = asked.elapsed();
    assert_eq!(down.status, 503, "{}", down.body);
    // The probe's own bound (2 s; it cannot fire early), well under the pool's 10 s acquire
    // timeout even on a slow machine. Without it the probe hung on the frozen connection.
    assert!(
        waited >= std::time::Duration::from_millis(1_900) && waited < std::time::Duration::from_secs(6),
        "answered after {waited:?}"
    );

    frozen.store(false, std::sync::atomic::Ordering::SeqCst);
    let mut ready = app.get("/readyz").await.status;
    for _ in 0..50 {
        if ready == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        ready = app.get("/readyz").await.status;
    }
    assert_eq!(ready, 200, "ready again once the database answers");
}

both_engines!(
    invented_methods_and_paths_never_become_metric_labels,
    |engine| async move {
        let db = TestDatabase::new(engine).await;
        let app = spawn_app(&db, AppOptions::default()).await;
        for i in 0..150 {
            let method = reqwest::Method::from_bytes(format!("INVENTED{i}").as_bytes()).unwrap();
            let answer = app
                .client
                .request(method, app.url(&format!("/made/up/path/{i}")))
                .send()
                .await
                .unwrap();
            assert!(answer.status().is_client_error(), "{}", answer.status());
            let answer = app
                .client
                .request(
                    reqwest::Method::from_bytes(format!("ALSO{i}").as_bytes()).unwrap(),
                    app.url("/api/v1/events"),
                )
                .send()
                .await
                .unwrap();
            assert!(answer.status().is_client_error(), "{}", answer.status());
        }
        let metrics = app.metrics().await;
        let mut methods = std::collections::BTreeSet::new();
        let mut routes = std::collections::BTreeSet::new();
        for line in metrics
            .lines()
            .filter(|line| line.starts_with("boxoffice_http_requests"))
        {
            for label in ["method", "route"] {
                if let Some(value) = line
                    .split(&format!("{label}=\""))
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                {
                    if label == "method" {
                        methods.insert(value.to_owned());
                    } else {
                        routes.insert(value.to_owned());
                    }
                }
            }
        }
        assert!(methods.contains("other"), "{methods:?}");
        assert!(methods.len() <= 10, "a fixed set of methods: {methods:?}");
        assert!(!routes.iter().any(|route| route.contains("made")), "{routes:?}");
        assert!(routes.len() <= 10, "route templates only: {routes:?}");
    }
);
