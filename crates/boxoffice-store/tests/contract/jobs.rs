//! The JobLog contract (SPEC §4, the background jobs): every run of a job is recorded and
//! listed newest first, and runs older than the retention cut-off are pruned as new ones
//! are recorded.

use boxoffice_core::ids::JobRunId;
use boxoffice_core::jobs::{JobOutcome, JobRun};

use crate::{T0, at, fixture};

both_engines!(job_runs_are_recorded_newest_first_and_pruned, |engine| async move {
    let f = fixture(engine, &[]).await;
    let run = |started: u64, outcome| JobRun {
        id: JobRunId::generate(),
        job: "expire-holds".into(),
        started_at: at(started),
        finished_at: at(started + 1),
        outcome,
        affected: started,
        error: (outcome == JobOutcome::Failed).then(|| "database down".to_owned()),
    };
    for i in 0..5 {
        f.store
            .record_job_run(&run(i * 10, JobOutcome::Succeeded), T0)
            .await
            .unwrap();
    }
    f.store.record_job_run(&run(60, JobOutcome::Failed), T0).await.unwrap();
    let runs = f.store.list_job_runs("expire-holds", 3).await.unwrap();
    let started: Vec<_> = runs.iter().map(|r| r.started_at).collect();
    assert_eq!(started, [at(60), at(40), at(30)]);
    assert_eq!(runs[0].outcome, JobOutcome::Failed);
    assert_eq!(runs[0].error.as_deref(), Some("database down"));
    assert!(f.store.list_job_runs("other-job", 10).await.unwrap().is_empty());

    f.store
        .record_job_run(&run(70, JobOutcome::Succeeded), at(35))
        .await
        .unwrap();
    let left: Vec<_> = f
        .store
        .list_job_runs("expire-holds", 100)
        .await
        .unwrap()
        .iter()
        .map(|r| r.affected)
        .collect();
    assert_eq!(left, [70, 60, 40], "runs started before the retention cut-off are gone");
});
