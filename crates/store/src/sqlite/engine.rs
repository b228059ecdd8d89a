//! One SQLite file: a writer thread that group-commits, and a reader pool.
//!
//! # Group commit
//! Every write is a job sent to the file's single writer thread. The thread
//! takes every job waiting in its queue (up to [`MAX_BATCH`]), runs them in one
//! transaction, each inside its own savepoint so a failed job rolls back alone,
//! commits once, and only then answers each caller. With `synchronous=FULL`
//! in WAL mode the commit is on disk before any caller hears "ok", and one
//! fsync is shared by every request that arrived while the last one ran.
//!
//! # Reads
//! WAL readers never wait for the writer. Point reads are a few microseconds,
//! so they run on the calling task with a pooled connection rather than paying
//! for a hop to a blocking thread.
//!
//! # Checkpoints
//! A checkpoint copies committed pages from the WAL into the database file and
//! syncs it. Left to the writer (SQLite's default), it stalls every write queued
//! behind it. Here a thread of its own runs passive checkpoints, which never
//! block the writer or readers, so the copying overlaps with new commits. The
//! writer still checkpoints by itself if the WAL grows far past that pace.
//!
//! # Shadow state
//! A store may keep an in-memory index derived from its rows (see
//! [`Shadow`]). The writer tells it where each job starts, and whether that job
//! and then the whole batch stood, so the index never keeps a change the file
//! lost.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};

use crate::StoreError;

/// Most jobs committed in one transaction.
pub const MAX_BATCH: usize = 4096;
/// Reader connections kept per file. Reads run on the async worker threads,
/// so no more are ever in use at once than there are worker threads.
const MAX_IDLE_READERS: usize = 2;
/// Page cache of the writer connection, KiB. Inserts append at the right
/// edge of each table and index, so a few hot pages are all a writer needs.
const WRITER_CACHE_KIB: i64 = 2 * 1024;
/// How often the checkpoint thread copies committed WAL pages into the file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// WAL pages after which the writer stops to checkpoint by itself: only
/// reached if the checkpoint thread falls far behind (about 200 MiB of WAL).
const WRITER_CHECKPOINT_PAGES: u32 = 50_000;
/// Page cache of each reader connection, KiB.
const READER_CACHE_KIB: i64 = 2 * 1024;

/// A queued write: `run` executes it inside the batch transaction and reports
/// whether it failed; `complete` answers the caller once the batch's commit
/// outcome is known (a job that never ran is answered with the error).
trait WriteJob: Send {
    fn run(&mut self, conn: &Connection) -> bool;
    fn complete(self: Box<Self>, commit: Result<(), StoreError>);
}

type Job = Box<dyn WriteJob>;

struct TypedJob<R, F> {
    work: Option<F>,
    result: Option<Result<R, StoreError>>,
    reply: oneshot::Sender<Result<R, StoreError>>,
}

impl<R, F> WriteJob for TypedJob<R, F>
where
    R: Send,
    F: FnOnce(&Connection) -> Result<R, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        match self.work.take() {
            Some(work) => {
                let result = work(conn);
                let failed = result.is_err();
                self.result = Some(result);
                failed
            }
            None => true,
        }
    }

    fn complete(self: Box<Self>, commit: Result<(), StoreError>) {
        let outcome = match (commit, self.result) {
            (Err(e), _) => Err(e),
            (Ok(()), Some(result)) => result,
            (Ok(()), None) => Err(StoreError::Closed),
        };
        // The caller may have gone away; the write stands either way.
        let _ = self.reply.send(outcome);
    }
}

/// In-memory state derived from a database file that must follow its
/// transactions: write jobs change it as they change rows; the writer keeps
/// the changes when the batch commits and undoes them when a job, or the
/// whole batch, is rolled back.
pub trait Shadow: Send + Sync + 'static {
    /// A point to undo a failing job back to.
    fn mark(&self) -> usize;
    /// Undoes every change made since `mark`.
    fn undo_to(&self, mark: usize);
    /// The batch committed: its changes stand.
    fn commit(&self);
}

/// A SQLite database file opened for Strongroom.
pub struct Database {
    path: PathBuf,
    jobs: mpsc::UnboundedSender<Job>,
    readers: Mutex<Vec<Connection>>,
    // Dropping it stops the checkpoint thread.
    _checkpoints: std_mpsc::Sender<()>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("path", &self.path)
            .finish()
    }
}

/// A schema: ordered migration scripts. Script `i` moves `user_version` to `i + 1`.
pub type Migrations = &'static [&'static str];

impl Database {
    /// Opens (creating with mode 0600 if missing) and migrates a database file,
    /// and starts its writer thread.
    pub fn open(path: &Path, migrations: Migrations) -> Result<Arc<Self>, StoreError> {
        create_private_file(path)?;
        Self::start(path, migrations, None, |_| Ok(None))
    }

    /// Opens a file whose writes must all come through this process, with
    /// shadow state built from the migrated file (by `build`, on the writer
    /// connection, before any write runs). An exclusive lock on `PATH-lock`
    /// is held until the writer thread ends; a second opener waits up to
    /// [`LOCK_WAIT`] for it, then fails with [`StoreError::Locked`].
    pub fn open_exclusive(
        path: &Path,
        migrations: Migrations,
        build: impl FnOnce(&Connection) -> Result<Option<Arc<dyn Shadow>>, StoreError>,
    ) -> Result<Arc<Self>, StoreError> {
        create_private_file(path)?;
        let lock = lock_exclusive(path)?;
        Self::start(path, migrations, Some(lock), build)
    }

    fn start(
        path: &Path,
        migrations: Migrations,
        lock: Option<std::fs::File>,
        build: impl FnOnce(&Connection) -> Result<Option<Arc<dyn Shadow>>, StoreError>,
    ) -> Result<Arc<Self>, StoreError> {
        let writer = open_connection(path, false)?;
        migrate(&writer, migrations)?;
        let shadow = build(&writer)?;
        let checkpointer = open_connection(path, false)?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("db");
        let (tx, rx) = mpsc::unbounded_channel::<Job>();
        spawn(format!("sqlite-writer-{stem}"), move || {
            writer_loop(writer, rx, shadow);
            // Released only once the last write is done.
            drop(lock);
        })?;
        let (stop_tx, stop_rx) = std_mpsc::channel::<()>();
        spawn(format!("sqlite-ckpt-{stem}"), move || {
            checkpoint_loop(checkpointer, stop_rx)
        })?;
        Ok(Arc::new(Self {
            path: path.to_owned(),
            jobs: tx,
            readers: Mutex::new(Vec::new()),
            _checkpoints: stop_tx,
        }))
    }

    /// Path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in the next group-committed transaction and returns its result
    /// once the transaction is durable. If `f` fails, its own changes are
    /// rolled back and the others in the batch still commit.
    pub async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let (reply_tx, reply_rx) = oneshot::channel::<Result<R, StoreError>>();
        let job: Job = Box::new(TypedJob {
            work: Some(f),
            result: None,
            reply: reply_tx,
        });
        self.jobs.send(job).map_err(|_| StoreError::Closed)?;
        reply_rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs a read with a pooled connection on the calling thread.
    pub fn read<R>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let pooled = self.readers.lock().ok().and_then(|mut pool| pool.pop());
        let conn = match pooled {
            Some(conn) => conn,
            None => open_connection(&self.path, true)?,
        };
        let result = f(&conn);
        if let Ok(mut pool) = self.readers.lock()
            && pool.len() < MAX_IDLE_READERS
        {
            pool.push(conn);
        }
        result
    }
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> Result<(), StoreError> {
    std::thread::Builder::new()
        .name(name)
        .spawn(f)
        .map(|_| ())
        .map_err(|e| StoreError::Backend {
            op: "start database thread",
            detail: e.to_string(),
        })
}

/// Runs passive checkpoints until the database is dropped. A failed
/// checkpoint is only logged: the pages stay in the WAL, where reads still
/// find them, and the next attempt (or the writer) copies them.
fn checkpoint_loop(conn: Connection, stop: std_mpsc::Receiver<()>) {
    while let Err(std_mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "background checkpoint failed");
        }
    }
}

/// How long a second opener of an exclusive file waits for the first to
/// finish (a restart in the same process hands over within milliseconds).
pub const LOCK_WAIT: Duration = Duration::from_secs(2);

fn lock_exclusive(path: &Path) -> Result<std::fs::File, StoreError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push("-lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| StoreError::Backend {
            op: "open lock file",
            detail: e.to_string(),
        })?;
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    path: path.display().to_string(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StoreError::Backend {
                    op: "lock database",
                    detail: e.to_string(),
                });
            }
        }
    }
}

fn create_private_file(path: &Path) -> Result<(), StoreError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map(|_| ())
        .map_err(|e| StoreError::Backend {
            op: "create database file",
            detail: format!("{}: {e}", path.display()),
        })
}

fn open_connection(path: &Path, read_only: bool) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(StoreError::backend("open"))?;
    // WAL: readers never block the writer. synchronous=FULL: a commit is on
    // disk before it returns, so an acknowledged write survives power loss.
    // secure_delete: freed pages are zeroed, so deleted rows do not linger.
    // temp_store=MEMORY: sorts and temporary tables never touch disk.
    let pragmas = if read_only {
        format!(
            "PRAGMA busy_timeout = 5000; PRAGMA query_only = ON; PRAGMA temp_store = MEMORY; \
             PRAGMA cache_size = -{READER_CACHE_KIB};"
        )
    } else {
        format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA secure_delete = ON; \
             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; PRAGMA temp_store = MEMORY; \
             PRAGMA cache_size = -{WRITER_CACHE_KIB}; PRAGMA wal_autocheckpoint = {WRITER_CHECKPOINT_PAGES};"
        )
    };
    conn.execute_batch(&pragmas)
        .map_err(StoreError::backend("configure connection"))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn migrate(conn: &Connection, migrations: Migrations) -> Result<(), StoreError> {
    let current: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(StoreError::backend("read schema version"))?;
    let supported = migrations.len() as i64;
    if current > supported {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported,
        });
    }
    for (i, script) in migrations.iter().enumerate().skip(current as usize) {
        let sql = format!("BEGIN; {script}; PRAGMA user_version = {}; COMMIT;", i + 1);
        conn.execute_batch(&sql)
            .map_err(StoreError::backend("migrate schema"))?;
    }
    Ok(())
}

fn writer_loop(
    conn: Connection,
    mut rx: mpsc::UnboundedReceiver<Job>,
    shadow: Option<Arc<dyn Shadow>>,
) {
    let mark = || shadow.as_ref().map_or(0, |s| s.mark());
    let undo_to = |m: usize| {
        if let Some(s) = &shadow {
            s.undo_to(m);
        }
    };
    let mut batch: Vec<Job> = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let begun = conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(StoreError::backend("begin transaction"));
        if let Err(e) = begun {
            for job in batch.drain(..) {
                job.complete(Err(clone_error(&e)));
            }
            continue;
        }
        // If SQLite abandons the transaction (disk full, I/O error), the jobs
        // after that point must not run: each savepoint would then be a
        // transaction of its own and commit alone. They are failed instead,
        // and so are the ones before, whose work went with the transaction.
        let mut aborted = false;
        for job in batch.iter_mut() {
            if conn.is_autocommit() || run_statement(&conn, "SAVEPOINT job").is_err() {
                aborted = true;
                break;
            }
            let job_start = mark();
            let failed = job.run(&conn);
            if failed {
                undo_to(job_start);
            }
            let undone = !failed || run_statement(&conn, "ROLLBACK TO job").is_ok();
            if !undone || run_statement(&conn, "RELEASE job").is_err() {
                // A failed job that could not be undone must not be committed
                // with the rest.
                aborted = true;
                break;
            }
        }
        if aborted || conn.is_autocommit() {
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            undo_to(0);
            tracing::error!(
                jobs = batch.len(),
                "write transaction aborted; failing its jobs"
            );
            for job in batch.drain(..) {
                job.complete(Err(StoreError::Backend {
                    op: "transaction",
                    detail: "the transaction was aborted by the database".into(),
                }));
            }
            continue;
        }
        let committed = conn
            .execute_batch("COMMIT")
            .map_err(StoreError::backend("commit"));
        tracing::trace!(jobs = batch.len(), ok = committed.is_ok(), "group commit");
        match (&committed, &shadow) {
            (Err(_), _) => {
                let _ = conn.execute_batch("ROLLBACK");
                undo_to(0);
            }
            (Ok(()), Some(s)) => s.commit(),
            (Ok(()), None) => {}
        }
        for job in batch.drain(..) {
            job.complete(committed.as_ref().map(|_| ()).map_err(clone_error));
        }
    }
}

/// Runs a parameterless statement through the statement cache (the savepoint
/// statements run twice per job; parsing them each time is measurable).
fn run_statement(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn clone_error(e: &StoreError) -> StoreError {
    StoreError::Backend {
        op: "transaction",
        detail: e.to_string(),
    }
}
