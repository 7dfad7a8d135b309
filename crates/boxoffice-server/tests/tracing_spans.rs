//! Spans carried across spawned tasks, on both engines: holds are placed in batches by a
//! task of their own (see `boxoffice_core::service` holds), and the line logged about each
//! hold must still carry the id of the HTTP request that asked for it.
//!
//! The test installs a process-wide subscriber that writes the full span context of every
//! line to a buffer, as an operator's log would show it.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use boxoffice_core::service::HoldBatching;
use common::{AppOptions, TestDatabase, spawn_app};
use serde_json::json;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Everything logged in this process, as text.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// Installs the subscriber once per process (the two engines' tests share a process
    /// under `cargo test`) and returns its buffer.
    fn capture() -> Logs {
        static LOGS: OnceLock<Logs> = OnceLock::new();
        LOGS.get_or_init(|| {
            let logs = Logs::default();
            let subscriber = tracing_subscriber::fmt()
                .with_env_filter(EnvFilter::new("info,boxoffice_core=debug"))
                .with_writer(logs.clone())
                .with_ansi(false)
                .finish();
            tracing::subscriber::set_global_default(subscriber).unwrap();
            logs
        })
        .clone()
    }

    fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).lines().map(str::to_owned).collect()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

both_engines!(
    each_holds_batch_line_carries_the_request_id_of_its_request,
    |engine| async move {
        let logs = Logs::capture();
        let db = TestDatabase::new(engine).await;
        // A lane waits a second for its first batch, so requests sent together share one.
        let app = spawn_app(
            &db,
            AppOptions {
                hold_batching: HoldBatching {
                    max_batch: 128,
                    window: Duration::from_secs(1),
                },
                ..AppOptions::default()
            },
        )
        .await;
        let org = app.create_organization("Spans").await;
        let (event, types) = app.create_event(&org, &[("GA", 2_500, 100)]).await;

        let request_ids: Vec<String> = (0..8).map(|n| format!("spans-{engine:?}-{n}")).collect();
        let holds = request_ids.iter().map(|request_id| {
            let body = json!({ "event_id": event, "items": [{ "ticket_type_id": types[0], "quantity": 1 }] });
            app.send(
                app.client
                    .post(app.url("/api/v1/reservations"))
                    .header("x-request-id", request_id)
                    .json(&body),
            )
        });
        let answers = futures::future::join_all(holds).await;

        let lines = logs.lines();
        let mut largest_batch = 0;
        for (request_id, answer) in request_ids.iter().zip(&answers) {
            assert_eq!(answer.status, 201, "{}", answer.body);
            let hold_id = answer.body["id"].as_str().unwrap();
            let line = lines
                .iter()
                .find(|line| line.contains("hold placed in a batch") && line.contains(hold_id))
                .unwrap_or_else(|| panic!("no batch line for {hold_id} in:\n{}", lines.join("\n")));
            assert!(
                line.contains(&format!("request_id={request_id} ")),
                "the batch line of {hold_id} names its request {request_id}: {line}"
            );
            let batch: usize = line
                .split_once(" batch=")
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .and_then(|size| size.parse().ok())
                .unwrap_or_else(|| panic!("no batch size in {line}"));
            largest_batch = largest_batch.max(batch);
        }
        // Otherwise each line ran alone and proves less: shared batches are the point.
        assert!(largest_batch > 1, "the requests shared a batch: {lines:?}");
    }
);
