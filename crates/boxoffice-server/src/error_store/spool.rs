//! The local spool: where error reports go when the database cannot take them, so an
//! accepted error is never lost (SPEC §7).
//!
//! One file per batch, written to a temporary name, synced, then renamed into place and
//! the directory synced: a file either is whole or is not there, even across a power
//! loss. Reports keep their event ids, so writing a spooled batch twice (two instances
//! draining one directory, or a crash between the insert and the file's removal) stores
//! each report once. The spool is bounded in bytes; when full, new reports are refused
//! (the caller answers 503 or counts them dropped), never silently discarded.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use boxoffice_core::error_store::grouping::Fingerprint;
use boxoffice_core::error_store::reports::ErrorReport;
use boxoffice_core::failures::Severity;
use boxoffice_core::{BoxOffice, Timestamp};
use serde::{Deserialize, Serialize};

/// Spooled files end with this; anything else in the directory is ignored.
const EXTENSION: &str = "jsonl";

/// A spooled file that failed to store this many times (while the database answered) is
/// set aside as `.rejected`, so one bad file cannot block the others forever.
const MAX_FILE_FAILURES: u32 = 20;

/// Why a batch could not be spooled.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The spool holds its maximum.
    #[error("the error spool is full ({0} bytes)")]
    Full(u64),
    /// The disk refused.
    #[error("writing the error spool failed")]
    Io(#[from] io::Error),
}

/// A report as spooled: every field of [`ErrorReport`], in a stable JSON form.
#[derive(Serialize, Deserialize)]
struct SpooledReport {
    event_id: String,
    scope: String,
    fingerprint: String,
    title: String,
    severity: String,
    component: Option<String>,
    message: String,
    request_id: Option<String>,
    release: Option<String>,
    environment: Option<String>,
    payload: String,
    received_at: i64,
}

impl From<&ErrorReport> for SpooledReport {
    fn from(report: &ErrorReport) -> Self {
        Self {
            event_id: report.event_id.clone(),
            scope: report.scope.clone(),
            fingerprint: report.fingerprint.as_str().to_owned(),
            title: report.title.clone(),
            severity: report.severity.as_str().to_owned(),
            component: report.component.clone(),
            message: report.message.clone(),
            request_id: report.request_id.clone(),
            release: report.release.clone(),
            environment: report.environment.clone(),
            payload: report.payload.clone(),
            received_at: report.received_at.as_millis(),
        }
    }
}

impl SpooledReport {
    fn into_report(self) -> ErrorReport {
        ErrorReport {
            event_id: self.event_id,
            scope: self.scope,
            fingerprint: Fingerprint::from_trusted(self.fingerprint),
            title: self.title,
            severity: Severity::parse(&self.severity).unwrap_or(Severity::Error),
            component: self.component,
            message: self.message,
            request_id: self.request_id,
            release: self.release,
            environment: self.environment,
            payload: self.payload,
            received_at: Timestamp::from_millis(self.received_at),
        }
    }
}

/// What one drain pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Reports written to the database.
    pub stored: u64,
    /// Files still waiting (the database failed again).
    pub left: u64,
}

/// A spool directory.
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    bytes: AtomicU64,
    /// Failures per file name while draining.
    failures: Mutex<std::collections::HashMap<String, u32>>,
}

impl Spool {
    /// Opens (creating) the spool directory and measures what it holds already.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let spool = Self {
            dir: dir.to_owned(),
            max_bytes,
            bytes: AtomicU64::new(0),
            failures: Mutex::new(std::collections::HashMap::new()),
        };
        let held: u64 = spool
            .files()?
            .iter()
            .filter_map(|path| fs::metadata(path).ok())
            .map(|meta| meta.len())
            .sum();
        spool.bytes.store(held, Ordering::Relaxed);
        Ok(spool)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes held (approximately, across instances sharing the directory).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Whether anything may be waiting.
    pub fn is_empty(&self) -> bool {
        self.bytes() == 0
    }

    /// Writes a batch durably. Blocking I/O: call from a blocking context or accept a
    /// short block (the batch is small and this path runs only while the database is down).
    pub fn write(&self, reports: &[ErrorReport]) -> Result<(), SpoolError> {
        let mut body = Vec::new();
        for report in reports {
            serde_json::to_writer(&mut body, &SpooledReport::from(report)).map_err(io::Error::other)?;
            body.push(b'\n');
        }
        let size = body.len() as u64;
        let held = self.bytes();
        if held.saturating_add(size) > self.max_bytes {
            return Err(SpoolError::Full(held));
        }
        let name = format!(
            "{:013}-{}.{EXTENSION}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_millis()),
            boxoffice_core::ids::random_hex()
        );
        let temporary = self.dir.join(format!(".{name}.tmp"));
        {
            let mut file = OpenOptions::new().write(true).create_new(true).open(&temporary)?;
            file.write_all(&body)?;
            file.sync_all()?;
        }
        fs::rename(&temporary, self.dir.join(&name))?;
        File::open(&self.dir)?.sync_all()?;
        self.bytes.fetch_add(size, Ordering::Relaxed);
        Ok(())
    }

    /// The spooled files, oldest first.
    fn files(&self) -> io::Result<Vec<PathBuf>> {
        let mut files: Vec<PathBuf> = fs::read_dir(&self.dir)?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| {
                path.extension().is_some_and(|ext| ext == EXTENSION)
                    && !path
                        .file_name()
                        .and_then(|name| name.to_str())
                        .is_some_and(|name| name.starts_with('.'))
            })
            .collect();
        files.sort();
        Ok(files)
    }

    /// Writes spooled batches to the database, oldest first, removing each once stored.
    /// Stops at the first failure: the database is likely still down.
    pub async fn drain(&self, boxoffice: &BoxOffice) -> io::Result<Drained> {
        let files = self.files()?;
        let mut drained = Drained::default();
        for (index, path) in files.iter().enumerate() {
            let Ok(text) = fs::read_to_string(path) else {
                // Removed by another instance meanwhile.
                continue;
            };
            let reports: Vec<ErrorReport> = text
                .lines()
                .filter(|line| !line.trim().is_empty())
                .filter_map(|line| match serde_json::from_str::<SpooledReport>(line) {
                    Ok(spooled) => Some(spooled.into_report()),
                    Err(err) => {
                        tracing::error!(file = %path.display(), error = %err, "unreadable line in the error spool");
                        None
                    }
                })
                .collect();
            match boxoffice.record_errors(&reports).await {
                Ok(_) => {
                    let size = text.len() as u64;
                    match fs::remove_file(path) {
                        Ok(()) => {
                            self.bytes
                                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some(b.saturating_sub(size)))
                                .ok();
                        }
                        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                        Err(err) => return Err(err),
                    }
                    drained.stored += reports.len() as u64;
                }
                Err(err) => {
                    // Held against the file only when the database answers otherwise: an
                    // outage, however long, never sets a batch aside.
                    let database_answers = boxoffice.store().ping().await.is_ok();
                    if database_answers && !err.is_database_unavailable() {
                        self.count_failure(path, &err, text.len() as u64);
                    }
                    drained.left = (files.len() - index) as u64;
                    break;
                }
            }
        }
        if drained.left == 0 && self.files()?.is_empty() {
            self.bytes.store(0, Ordering::Relaxed);
        }
        Ok(drained)
    }

    fn count_failure(&self, path: &Path, err: &boxoffice_core::service::Error, size: u64) {
        let name = path.display().to_string();
        let mut failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = failures.entry(name.clone()).or_insert(0);
        *count += 1;
        if *count >= MAX_FILE_FAILURES {
            let rejected = path.with_extension("rejected");
            tracing::error!(
                file = %path.display(),
                error = %boxoffice_core::service::error_chain(err),
                "a spooled error batch keeps failing while the database answers; set aside as .rejected for an operator"
            );
            if fs::rename(path, &rejected).is_ok() {
                failures.remove(&name);
                self.bytes
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some(b.saturating_sub(size)))
                    .ok();
            }
        }
    }
}
