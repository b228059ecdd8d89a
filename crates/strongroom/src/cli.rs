//! Command-line interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Strongroom: a vault for secrets worth money.
#[derive(Parser)]
#[command(name = "strongroom", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create a data directory: a new root key split into key shares.
    Init(InitArgs),
    /// Run the server.
    Serve(ServeArgs),
    /// Serve the API as an AWS Lambda function behind API Gateway (built
    /// with the `lambda` feature).
    #[cfg(feature = "lambda")]
    Lambda(LambdaArgs),
    /// Seal, unseal, status and key rotation.
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// Manage principals, services and people (needs an administrator).
    #[command(subcommand)]
    Principals(PrincipalsCommand),
    /// Custom roles: list, define and approve (dual control).
    #[command(subcommand)]
    Roles(RolesCommand),
    /// The voucher business: import codes into stock.
    #[command(subcommand)]
    Vouchers(VouchersCommand),
    /// Store, reveal, show and delete secrets.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Audit log tools.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// What the detectors raised: list and acknowledge alerts.
    #[command(subcommand)]
    Alerts(AlertsCommand),
    /// Suppliers: credentials, replenishment, purchases, reconciliation.
    #[command(subcommand)]
    Suppliers(SuppliersCommand),
    /// PostgreSQL: create schemas, roles and grants; apply migrations.
    #[command(subcommand)]
    Db(DbCommand),
    /// Set your password and add your authenticator, with the one-time
    /// enrolment code an administrator gave you.
    Enrol {
        /// Your user name.
        #[arg(long)]
        username: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Log in as a person (password and authenticator code, never echoed);
    /// later commands use the session until it expires.
    Login {
        /// Your user name.
        #[arg(long)]
        username: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Prove your authenticator again, for actions that need a recent
    /// second factor (reveals, key and principal management).
    StepUp(#[command(flatten)] ClientArgs),
    /// Forget the saved session.
    Logout,
    /// Print the OpenAPI 3.1 document of the HTTP API (as served at
    /// /v1/openapi.json and kept in docs/openapi.json).
    Openapi,
}

/// `strongroom vouchers retailers …`.
#[derive(Subcommand)]
pub enum RetailersCommand {
    /// Add a retailer.
    Add {
        /// Unique name within the tenant.
        name: String,
        /// Tenant, for a stock manager bound to several.
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the retailers.
    List(#[command(flatten)] ClientArgs),
}

/// `strongroom vouchers products …`.
#[derive(Subcommand)]
pub enum ProductsCommand {
    /// Add a product (SKU) of a retailer with the face values it comes in.
    Add {
        /// Unique SKU within the tenant.
        #[arg(long)]
        sku: String,
        /// The retailer, by name or id.
        #[arg(long)]
        retailer: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// ISO 4217 currency, e.g. GBP.
        #[arg(long)]
        currency: String,
        /// A face value as an amount, e.g. 25.00 (repeat for each).
        #[arg(long = "face-value", required = true)]
        face_values: Vec<String>,
        /// Fewer available vouchers of a face value than this is low stock.
        #[arg(long)]
        low_stock: Option<i64>,
        /// Tenant, for a stock manager bound to several.
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the products.
    List(#[command(flatten)] ClientArgs),
}

/// `strongroom vouchers …`.
#[derive(Subcommand)]
pub enum VouchersCommand {
    /// The retailers of the catalogue.
    #[command(subcommand)]
    Retailers(RetailersCommand),
    /// The products (SKUs) of the catalogue.
    #[command(subcommand)]
    Products(ProductsCommand),
    /// Import a retailer's CSV file of codes into stock (as a stock
    /// manager). Columns: sku, code, face_value, currency and optionally pin,
    /// expires_at, serial; see the README for an example file.
    Import {
        /// The CSV file.
        file: PathBuf,
        /// The retailer whose codes these are, by name or id.
        #[arg(long)]
        retailer: String,
        /// Tenant, for a stock manager bound to several.
        #[arg(long)]
        tenant: Option<String>,
        /// Check every row and report, store nothing.
        #[arg(long)]
        dry_run: bool,
        /// Stock the file only if every row is accepted; if any is refused,
        /// stock none of it.
        #[arg(long)]
        all_or_nothing: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Move delivered vouchers older than an age to the archive vault now
    /// (the server also does it by itself; needs a stock manager bound to
    /// every tenant, `*`).
    Archive {
        /// Archive vouchers delivered more than this many days ago
        /// (default: the server's `archive_after_days`).
        #[arg(long)]
        older_than_days: Option<u32>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `strongroom roles …`.
#[derive(Subcommand)]
pub enum RolesCommand {
    /// List built-in and custom roles, their permissions and any change
    /// waiting for approval.
    List(#[command(flatten)] ClientArgs),
    /// Define a custom role, or change one (as an administrator bound to
    /// every tenant). A role that gains a power needing dual control waits
    /// for a security officer.
    Define {
        /// Role name (a-z, 0-9, '_', '-').
        name: String,
        /// Permission (repeat for several), e.g. secrets:reveal_masked.
        #[arg(long = "permission", required = true)]
        permissions: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Approve the change waiting on a custom role (as a security officer
    /// other than the requester). Name every permission you approve: the
    /// approval is refused if the waiting change is not exactly that.
    Approve {
        /// Role name.
        name: String,
        /// Permission you approve (repeat for each one of the waiting change).
        #[arg(long = "permission")]
        permissions: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `strongroom db …`.
#[derive(Subcommand)]
pub enum DbCommand {
    /// Create (if missing) the owner role, one login role and one schema per
    /// store, their grants, and migrate. Safe to re-run. Prints the storage
    /// settings for the server's configuration, or writes them (mode 0600).
    Setup {
        #[command(flatten)]
        db: DbArgs,
        /// Write the settings to this file (mode 0600) instead of printing them.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Give existing store roles new passwords (running servers then
        /// need the new settings).
        #[arg(long)]
        reset_passwords: bool,
    },
    /// Apply this build's migrations to every store's schema. Safe to re-run,
    /// and from several nodes at once.
    Migrate {
        #[command(flatten)]
        db: DbArgs,
    },
}

/// How `db` commands reach PostgreSQL.
#[derive(Args)]
pub struct DbArgs {
    /// A URL whose role may create roles and schemas, e.g.
    /// `postgres://postgres@db.internal/strongroom?sslmode=verify-full`.
    /// Prefer the environment variable: command lines are visible to other users.
    #[arg(long, env = "STRONGROOM_DB_ADMIN_URL", hide_env_values = true)]
    pub admin_url: String,
    /// Prefix of schema and role names.
    #[arg(long, default_value = strongroom_store_postgres::DEFAULT_PREFIX)]
    pub prefix: String,
}

#[derive(Args)]
pub struct InitArgs {
    /// Data directory to create (embedded SQLite stores).
    #[arg(long, required_unless_present = "config", conflicts_with = "config")]
    pub data_dir: Option<PathBuf>,
    /// The server's configuration: initialise the stores it names (for
    /// PostgreSQL, after `strongroom db setup`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Number of key shares to print.
    #[arg(long, default_value_t = 5)]
    pub shares: u8,
    /// Shares needed to unseal.
    #[arg(long, default_value_t = 3)]
    pub threshold: u8,
}

#[derive(Args)]
pub struct ServeArgs {
    /// Development mode: create and auto-unseal a data directory with a key
    /// file, a self-signed certificate and dev credentials. Never in production.
    #[arg(long)]
    pub dev: bool,
    /// TOML configuration file.
    #[arg(long, conflicts_with = "dev")]
    pub config: Option<PathBuf>,
    /// Data directory (dev default: ./strongroom-dev).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:8443).
    #[arg(long)]
    pub listen: Option<String>,
    /// Serve plain HTTP. Only accepted on a loopback address.
    #[arg(long)]
    pub insecure_http: bool,
    /// Log level filter (overrides RUST_LOG), e.g. info, debug, trace.
    #[arg(long)]
    pub log_level: Option<String>,
    /// Keep the stores in PostgreSQL at this URL (after `strongroom db
    /// setup`) instead of the configuration's `[storage]`: each store logs in
    /// as its own role, with passwords from PGPASSFILE / ~/.pgpass.
    #[arg(long, env = "STRONGROOM_POSTGRES_URL", hide_env_values = true)]
    pub postgres: Option<String>,
    /// Serve only these route groups (comma-separated): tokenize, reveal,
    /// relay, risk, secrets, people, admin, audit, vouchers. Health, seal status,
    /// the API document and access tokens are always served. Default: all.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
}

/// `strongroom lambda`.
#[cfg(feature = "lambda")]
#[derive(Args)]
pub struct LambdaArgs {
    /// TOML configuration file (`[storage]` must be PostgreSQL).
    #[arg(long, env = "STRONGROOM_CONFIG")]
    pub config: PathBuf,
    /// File of key shares, one per line (mode 600), to unseal at a cold
    /// start; provide it from a secret store. Without it the function
    /// answers `503 vault.sealed`.
    #[arg(long, env = "STRONGROOM_UNSEAL_SHARES_FILE")]
    pub unseal_shares_file: Option<PathBuf>,
    /// Serve only these route groups (comma-separated), as `serve --only`.
    #[arg(long, env = "STRONGROOM_ONLY", value_delimiter = ',')]
    pub only: Vec<String>,
}

/// How the CLI reaches a server and authenticates.
#[derive(Args, Clone)]
pub struct ClientArgs {
    /// Server URL. Default: from the credentials file.
    #[arg(long, env = "STRONGROOM_URL", global = true)]
    pub url: Option<String>,
    /// CA certificate (PEM) to trust for the server.
    #[arg(long, env = "STRONGROOM_CA_CERT", global = true)]
    pub ca_cert: Option<PathBuf>,
    /// Client id. The secret is read from STRONGROOM_CLIENT_SECRET, never from the command line.
    #[arg(long, env = "STRONGROOM_CLIENT_ID", global = true)]
    pub client_id: Option<String>,
    /// A dev-credentials.json written by `serve --dev`
    /// (default: ./strongroom-dev/dev-credentials.json if it exists).
    #[arg(long, env = "STRONGROOM_CREDENTIALS", global = true)]
    pub credentials: Option<PathBuf>,
    /// Which identity in the credentials file to use: admin, service,
    /// security_officer, stock_manager or auditor.
    #[arg(long = "as", global = true)]
    pub as_identity: Option<String>,
}

#[derive(Subcommand)]
pub enum OperatorCommand {
    /// Give key shares to a sealed server, reading one share per line from stdin
    /// (prompted on a terminal).
    Unseal(#[command(flatten)] ClientArgs),
    /// Seal the server: it forgets its keys until unsealed again.
    Seal(#[command(flatten)] ClientArgs),
    /// Show seal status.
    Status(#[command(flatten)] ClientArgs),
    /// Create the first administrator and security officer (two people)
    /// with the one-time bootstrap token `init` printed, read from
    /// STRONGROOM_BOOTSTRAP_TOKEN or typed at the prompt (never echoed).
    Bootstrap {
        /// User name of the first administrator.
        #[arg(long)]
        admin: String,
        /// User name of the first security officer: another person.
        #[arg(long)]
        security_officer: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Add a key version for a tenant and data class.
    Rotate {
        /// Tenant whose key to rotate.
        #[arg(long)]
        tenant: String,
        /// Data class: voucher_code or generic.
        #[arg(long)]
        class: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
pub enum PrincipalsCommand {
    /// Create a principal; its client secret (a service) or enrolment code
    /// (a person) is printed once.
    Create {
        /// Unique name (letters, digits, '-', '_', '.', '@').
        #[arg(long)]
        name: String,
        /// `service` (client credentials) or `user` (a person: password and TOTP).
        #[arg(long, default_value = "service")]
        kind: String,
        /// Role (repeat for several): ingest, fulfilment, security_officer,
        /// admin, auditor, support, or a custom role.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// Tenant (repeat for several; '*' for all).
        #[arg(long = "tenant", required = true)]
        tenants: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List principals.
    List(#[command(flatten)] ClientArgs),
    /// Approve a pending principal (as a security officer other than its creator).
    Approve {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Give a service a new client secret (printed once); the old one keeps
    /// working for the overlap, so clients can move without an outage.
    RotateSecret {
        id: String,
        /// Seconds the old secret keeps working (0 cuts it off now; at most a week).
        #[arg(long, default_value_t = 3600)]
        overlap_secs: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Unlock a person locked out by failed logins.
    Unlock {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Disable a principal by id.
    Disable {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Freeze a principal: every request it makes is refused until it is
    /// unfrozen (needs `principals:freeze`, a security officer's).
    Freeze {
        id: String,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Lift a freeze, the detectors' or a person's, once the alert behind
    /// it has been looked into.
    Unfreeze {
        id: String,
        /// What was found (kept in the audit log).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `strongroom suppliers …`.
#[derive(Subcommand)]
pub enum SuppliersCommand {
    /// The configured suppliers: circuit, today's spend against the limit,
    /// whether a credential is set.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Set a supplier's credential (as a security officer), read from stdin
    /// or a prompt, never from the command line: an API key, or for Tango
    /// Card CLIENT_ID:CLIENT_SECRET.
    Credential {
        /// The supplier's configured name.
        supplier: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Buy what every product below its minimum lacks to reach its target,
    /// with progress (as a stock manager).
    Replenish {
        /// Show what would be bought, buy nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Purchases, newest first.
    Purchases {
        /// Only in this state (`awaiting_approval`, `unsettled`, …).
        #[arg(long)]
        state: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Approve a purchase over a spend limit and buy it (as a security
    /// officer other than who asked).
    Approve {
        /// Purchase id (`pu_…`).
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Compare a day's purchases: ordered, charged, received, in stock.
    /// Exits 3 when something does not add up.
    Reconcile {
        /// UTC day, YYYY-MM-DD.
        #[arg(long)]
        date: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `strongroom alerts …`.
#[derive(Subcommand)]
pub enum AlertsCommand {
    /// List alerts, newest first (needs `alerts:read`: auditors and
    /// security officers).
    List {
        /// `open` or `acknowledged`; default: both.
        #[arg(long, value_parser = ["open", "acknowledged"])]
        status: Option<String>,
        /// Only this detector's alerts (`reveal_rate`, `off_hours`, …).
        #[arg(long)]
        detector: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print the alerts as JSON, one per line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Acknowledge an alert with a note of what was found and done.
    Ack {
        id: String,
        /// What was found and done.
        #[arg(long)]
        note: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
pub enum SecretsCommand {
    /// Store a secret read from stdin (one value; a trailing newline is dropped).
    Put {
        /// Data class: voucher_code or generic.
        #[arg(long, default_value = "voucher_code")]
        class: String,
        /// Tenant; may be left out when your credential is bound to one.
        #[arg(long)]
        tenant: Option<String>,
        /// Metadata as a JSON object.
        #[arg(long)]
        metadata: Option<String>,
        /// Reveal window in seconds.
        #[arg(long)]
        window_secs: Option<u64>,
        /// On a duplicate: reject, return_existing or allow.
        #[arg(long, default_value = "reject")]
        on_duplicate: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Reveal a secret (printed to stdout).
    Reveal {
        token: String,
        /// Why it is revealed; recorded in the audit log.
        #[arg(long)]
        purpose: String,
        /// Print the whole JSON response rather than the value alone.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a secret's metadata (never its value).
    Show {
        token: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a secret.
    Delete {
        token: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Verify the audit chain offline. Needs the root key: reads key shares
    /// from stdin, or uses the dev key file of a dev data directory.
    Verify {
        /// Data directory of embedded stores.
        #[arg(long, required_unless_present = "config", conflicts_with = "config")]
        data_dir: Option<PathBuf>,
        /// The server's configuration (for PostgreSQL stores).
        #[arg(long)]
        config: Option<PathBuf>,
        /// A checkpoint file (from `strongroom audit checkpoint`): also
        /// proves that no record up to it was removed or changed since,
        /// even by someone who could rewrite the audit store.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
    },
    /// Save a checkpoint of the audit chain head, signed by the vault, to
    /// keep outside it (needs `audit:read`).
    Checkpoint {
        /// Write here (created; refused if it exists). Default: stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Export audit records of a time range from a running server, oldest
    /// first, one per line with its sequence number (needs `audit:read`).
    Export {
        /// From this time (RFC 3339, e.g. 2026-11-01T00:00:00Z); default: the start.
        #[arg(long)]
        since: Option<String>,
        /// Up to this time, exclusive (RFC 3339); default: now.
        #[arg(long)]
        until: Option<String>,
        /// `jsonl` (JSON Lines) or `cef` (ArcSight Common Event Format).
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl", "cef"])]
        format: String,
        /// Write here instead of stdout (created; refused if it exists).
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
}
