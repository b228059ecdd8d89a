//! Starting and watching the server process.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// A `strongroom serve --dev` process on a fresh data directory.
pub struct Server {
    child: Child,
    _dir: TempDir,
    /// Base URL.
    pub url: String,
    /// The dev credentials file's content.
    pub credentials: Value,
}

/// A PostgreSQL database made for one benchmark run.
pub struct Database {
    admin: String,
    name: String,
    /// Its URL (as the admin; each store replaces the user with its role).
    pub url: String,
}

impl Database {
    /// Creates the database and sets it up with `strongroom db setup`.
    pub async fn create(admin: &str, binary: &Path) -> Result<Self> {
        use sqlx::Connection;
        let name = format!("strongroom_bench_{}", std::process::id());
        let mut conn = sqlx::PgConnection::connect(admin)
            .await
            .with_context(|| format!("could not connect to {admin}"))?;
        // Two statements: DROP DATABASE may not share a transaction block.
        for statement in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                .execute(&mut conn)
                .await?;
        }
        let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
        let url = format!("{base}/{name}");
        let setup = Command::new(binary)
            .args(["db", "setup", "--admin-url", &url])
            .stdout(Stdio::null())
            .output()
            .context("could not run strongroom db setup")?;
        if !setup.status.success() {
            bail!(
                "db setup failed: {}",
                String::from_utf8_lossy(&setup.stderr)
            );
        }
        Ok(Self {
            admin: admin.to_owned(),
            name,
            url,
        })
    }

    /// Drops the database.
    pub async fn drop_database(self) -> Result<()> {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.admin).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut conn)
        .await?;
        Ok(())
    }
}

/// A directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Server {
    /// Starts the server and waits for its credentials file.
    pub async fn start(
        binary: &Path,
        database: Option<&Database>,
        detectors: bool,
        relay: Option<&crate::upstream::Upstream>,
    ) -> Result<Self> {
        if !binary.exists() {
            bail!(
                "{} not found: build it with `cargo build --release -p strongroom` (bench/run does)",
                binary.display()
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir =
            std::env::temp_dir().join(format!("strongroom-bench-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut command = Command::new(binary);
        command
            .args([
                "serve",
                "--dev",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(&dir);
        // Rate limiting stays on, as in production, with the load
        // generator's principal and address allowed more than it sends:
        // what is measured includes every bucket check.
        for (name, value) in [
            ("STRONGROOM_RATELIMIT__PER_ADDRESS__PER_SEC", "1000000"),
            ("STRONGROOM_RATELIMIT__PER_ADDRESS__BURST", "1000000"),
            ("STRONGROOM_RATELIMIT__PER_ROLE__INGEST__PER_SEC", "1000000"),
            ("STRONGROOM_RATELIMIT__PER_ROLE__INGEST__BURST", "1000000"),
            (
                "STRONGROOM_RATELIMIT__PER_ROLE__FULFILMENT__PER_SEC",
                "1000000",
            ),
            (
                "STRONGROOM_RATELIMIT__PER_ROLE__FULFILMENT__BURST",
                "1000000",
            ),
        ] {
            command.env(name, value);
        }
        // The detectors judge every record, as in production, but the load
        // generator's one principal, revealing thousands a second from its
        // first second, is no theft to freeze: its caps are out of reach.
        if detectors {
            for (name, value) in [
                ("STRONGROOM_WATCH__REVEAL_RATE__HARD_CAP", "1000000000"),
                ("STRONGROOM_WATCH__REVEAL_RATE__MIN_EXCESS", "1000000000"),
                ("STRONGROOM_WATCH__DELIVERY_RATE__HARD_CAP", "1000000000"),
                ("STRONGROOM_WATCH__DELIVERY_RATE__MIN_EXCESS", "1000000000"),
            ] {
                command.env(name, value);
            }
        } else {
            command.env("STRONGROOM_WATCH__ENABLED", "false");
        }
        if let Some(db) = database {
            command.arg("--postgres").arg(&db.url);
        }
        if let Some(upstream) = relay {
            command.env("STRONGROOM_RELAY", upstream.relay_env());
        }
        let child = command
            .env(
                "RUST_LOG",
                std::env::var("STRONGROOM_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("could not start the server")?;
        let creds_path = dir.join("dev-credentials.json");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(bytes) = std::fs::read(&creds_path)
                && let Ok(credentials) = serde_json::from_slice::<Value>(&bytes)
                && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            {
                let url = credentials["url"].as_str().unwrap_or_default().to_owned();
                return Ok(Self {
                    child,
                    _dir: TempDir(dir),
                    url,
                    credentials,
                });
            }
            if Instant::now() > deadline {
                bail!("the server did not start within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// (current RSS, peak RSS) in MiB, from /proc.
    pub fn memory(&self) -> (f64, f64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
                .map_or(0.0, |kb| kb / 1024.0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Stops the server.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// The CPU model, for the report.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
