//! Names, migrations and grants: one schema and one login role per store.
//!
//! Every object belongs to a `PREFIX_owner` role that cannot log in; setup
//! and migrations act as it. Each store logs in as its own role, which can
//! use only its own schema, and only the statements the store issues:
//!
//! | role | schema | may |
//! |---|---|---|
//! | `PREFIX_central` | `PREFIX_central` | SELECT, INSERT, UPDATE secrets and principals (never DELETE) |
//! | `PREFIX_vault` | `PREFIX_vault` | SELECT, INSERT, DELETE records; SELECT, INSERT keyring; SELECT, INSERT, UPDATE meta |
//! | `PREFIX_archive` | `PREFIX_archive` | as the vault role, on the archive schema |
//! | `PREFIX_audit` | `PREFIX_audit` | SELECT, INSERT on the audit log: no UPDATE, no DELETE |
//!
//! So a stolen central credential reads tokens and metadata, never a
//! ciphertext; the vault credential reads ciphertexts but not the audit log;
//! and nobody but the owner can rewrite an audit record. These are grants
//! in the database, not conventions in this code.

use crate::PgError;

/// The four stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// Tokens, metadata, principals.
    Central,
    /// Sealed secrets and the keyring.
    Vault,
    /// Sealed archived secrets.
    Archive,
    /// The chained audit log.
    Audit,
}

impl Store {
    /// All four, in setup order.
    pub const ALL: [Store; 4] = [Store::Central, Store::Vault, Store::Archive, Store::Audit];

    /// Short name, used in role and schema names.
    pub fn name(self) -> &'static str {
        match self {
            Store::Central => "central",
            Store::Vault => "vault",
            Store::Archive => "archive",
            Store::Audit => "audit",
        }
    }

    fn migrations(self) -> &'static [&'static str] {
        match self {
            Store::Central => CENTRAL,
            Store::Vault | Store::Archive => RECORDS,
            Store::Audit => AUDIT,
        }
    }
}

/// Role and schema names under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    prefix: String,
}

impl Names {
    /// Names under `prefix`: lower-case letters, digits and `_`, starting
    /// with a letter, at most 40 characters (they are spliced into DDL,
    /// where identifiers cannot be bound as parameters).
    pub fn new(prefix: &str) -> Result<Self, PgError> {
        let ok = prefix.len() <= 40
            && prefix.starts_with(|c: char| c.is_ascii_lowercase())
            && prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if ok {
            Ok(Self {
                prefix: prefix.to_owned(),
            })
        } else {
            Err(PgError::Config(format!(
                "'{prefix}' is not a valid prefix: use lower-case letters, digits and _, starting with a letter"
            )))
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The role that owns every object (cannot log in).
    pub fn owner(&self) -> String {
        format!("{}_owner", self.prefix)
    }

    /// A store's login role.
    pub fn role(&self, store: Store) -> String {
        format!("{}_{}", self.prefix, store.name())
    }

    /// A store's schema (named like its role).
    pub fn schema(&self, store: Store) -> String {
        self.role(store)
    }

    /// A store's migration scripts, with names filled in.
    pub fn migrations(&self, store: Store) -> Vec<String> {
        store
            .migrations()
            .iter()
            .map(|m| {
                m.replace("{schema}", &self.schema(store))
                    .replace("{role}", &self.role(store))
            })
            .collect()
    }
}

/// Default prefix of role and schema names.
pub const DEFAULT_PREFIX: &str = "strongroom";

// Scripts run as the owner, in order; script `i` takes a schema to version
// `i + 1`. Grants live with the tables they concern.

const CENTRAL: &[&str] = &[
    "CREATE TABLE {schema}.secrets (
         token TEXT PRIMARY KEY,
         tenant TEXT NOT NULL,
         class TEXT NOT NULL,
         key_version INTEGER NOT NULL,
         fingerprint BYTEA,
         duplicate_allowed BOOLEAN NOT NULL,
         metadata TEXT,
         created_at BIGINT NOT NULL,
         window_closes_at BIGINT NOT NULL,
         created_by TEXT NOT NULL,
         state TEXT NOT NULL
     );
     -- One original per fingerprint, across every node; allowed copies beside it.
     CREATE UNIQUE INDEX secrets_original ON {schema}.secrets (fingerprint)
         WHERE fingerprint IS NOT NULL AND NOT duplicate_allowed;
     CREATE INDEX secrets_fingerprint ON {schema}.secrets (fingerprint)
         WHERE fingerprint IS NOT NULL;
     CREATE TABLE {schema}.principals (
         id TEXT PRIMARY KEY,
         client_id TEXT NOT NULL UNIQUE,
         name TEXT NOT NULL UNIQUE,
         roles TEXT NOT NULL,
         tenants TEXT NOT NULL,
         secret_hash TEXT NOT NULL,
         created_at BIGINT NOT NULL,
         disabled BOOLEAN NOT NULL DEFAULT false,
         created_by TEXT NOT NULL,
         pending_approval BOOLEAN NOT NULL
     );
     GRANT SELECT, INSERT, UPDATE ON {schema}.secrets, {schema}.principals TO {role}",
    // 2: people log in with a password and TOTP; recovery codes are single use.
    "ALTER TABLE {schema}.principals ADD COLUMN kind TEXT NOT NULL DEFAULT 'service';
     ALTER TABLE {schema}.principals ADD COLUMN previous_secret_hash TEXT NOT NULL DEFAULT '';
     ALTER TABLE {schema}.principals ADD COLUMN previous_valid_until BIGINT NOT NULL DEFAULT 0;
     CREATE TABLE {schema}.operators (
         principal_id TEXT PRIMARY KEY REFERENCES {schema}.principals (id),
         password_hash TEXT NOT NULL,
         enrolment_hash TEXT NOT NULL,
         totp_sealed BYTEA NOT NULL,
         enrolled BOOLEAN NOT NULL,
         totp_last_step BIGINT NOT NULL,
         failed_logins BIGINT NOT NULL,
         last_failure_at BIGINT NOT NULL,
         factor_failures BIGINT NOT NULL,
         locked BOOLEAN NOT NULL
     );
     CREATE TABLE {schema}.recovery_codes (
         principal_id TEXT NOT NULL REFERENCES {schema}.principals (id),
         code_id TEXT NOT NULL,
         hash TEXT NOT NULL,
         PRIMARY KEY (principal_id, code_id)
     );
     GRANT SELECT, INSERT, UPDATE ON {schema}.operators TO {role};
     GRANT SELECT, INSERT, DELETE ON {schema}.recovery_codes TO {role}",
    // 3: custom roles; a change that needs a second person waits in `pending`.
    "CREATE TABLE {schema}.custom_roles (
         name TEXT PRIMARY KEY,
         permissions TEXT NOT NULL,
         pending TEXT,
         requested_by TEXT NOT NULL,
         created_by TEXT NOT NULL,
         created_at BIGINT NOT NULL,
         updated_at BIGINT NOT NULL,
         version BIGINT NOT NULL
     );
     GRANT SELECT, INSERT, UPDATE ON {schema}.custom_roles TO {role}",
    // 4: the voucher catalogue: retailers and their products (SKUs).
    "CREATE TABLE {schema}.retailers (
         id TEXT PRIMARY KEY,
         tenant TEXT NOT NULL,
         name TEXT NOT NULL,
         created_at BIGINT NOT NULL,
         created_by TEXT NOT NULL,
         UNIQUE (tenant, name)
     );
     CREATE TABLE {schema}.products (
         id TEXT PRIMARY KEY,
         tenant TEXT NOT NULL,
         retailer_id TEXT NOT NULL REFERENCES {schema}.retailers (id),
         sku TEXT NOT NULL,
         name TEXT NOT NULL,
         currency TEXT NOT NULL,
         denominations BIGINT[] NOT NULL,
         low_stock_threshold BIGINT NOT NULL,
         created_at BIGINT NOT NULL,
         created_by TEXT NOT NULL,
         UNIQUE (tenant, sku)
     );
     GRANT SELECT, INSERT, UPDATE ON {schema}.retailers, {schema}.products TO {role}",
    // 5: vouchers in stock (by token) and the imports that brought them.
    "CREATE TABLE {schema}.vouchers (
         id TEXT PRIMARY KEY,
         tenant TEXT NOT NULL,
         product_id TEXT NOT NULL,
         face_value BIGINT NOT NULL,
         currency TEXT NOT NULL,
         token TEXT NOT NULL UNIQUE,
         pin_token TEXT,
         expires_at BIGINT,
         serial TEXT,
         state TEXT NOT NULL,
         import_id TEXT NOT NULL,
         created_at BIGINT NOT NULL
     );
     CREATE INDEX vouchers_stock ON {schema}.vouchers (tenant, product_id, face_value, state, expires_at);
     CREATE TABLE {schema}.imports (
         id TEXT PRIMARY KEY,
         tenant TEXT NOT NULL,
         retailer_id TEXT NOT NULL,
         status TEXT NOT NULL,
         rows BIGINT NOT NULL,
         accepted BIGINT NOT NULL,
         rejected BIGINT NOT NULL,
         duplicates BIGINT NOT NULL,
         created_by TEXT NOT NULL,
         created_at BIGINT NOT NULL,
         finished_at BIGINT NOT NULL
     );
     GRANT SELECT, INSERT, UPDATE ON {schema}.vouchers, {schema}.imports TO {role}",
    // 6: orders (unique per client and reference) and every voucher's
    // transitions after import.
    "CREATE TABLE {schema}.orders (
         id TEXT PRIMARY KEY,
         tenant TEXT NOT NULL,
         client_id TEXT NOT NULL,
         external_ref TEXT NOT NULL,
         request_hash TEXT NOT NULL,
         product_id TEXT NOT NULL,
         sku TEXT NOT NULL,
         face_value BIGINT NOT NULL,
         currency TEXT NOT NULL,
         customer_ref TEXT NOT NULL,
         delivery TEXT NOT NULL,
         state TEXT NOT NULL,
         voucher_id TEXT NOT NULL,
         token TEXT NOT NULL,
         pin_token TEXT,
         expires_at BIGINT,
         created_at BIGINT NOT NULL,
         reserved_until BIGINT NOT NULL,
         delivered_at BIGINT NOT NULL,
         updated_at BIGINT NOT NULL,
         link_views_left BIGINT NOT NULL,
         link_expires_at BIGINT NOT NULL,
         cancel_reason TEXT,
         reopen_requested_by TEXT NOT NULL DEFAULT '',
         reopen_reason TEXT NOT NULL DEFAULT '',
         UNIQUE (client_id, external_ref)
     );
     CREATE INDEX orders_reserved ON {schema}.orders (state, reserved_until);
     CREATE INDEX orders_delivered ON {schema}.orders (state, delivered_at);
     CREATE INDEX orders_customer ON {schema}.orders (tenant, customer_ref);
     CREATE TABLE {schema}.voucher_events (
         seq BIGSERIAL PRIMARY KEY,
         kind TEXT NOT NULL DEFAULT 'transition',
         voucher_id TEXT NOT NULL,
         tenant TEXT NOT NULL,
         at BIGINT NOT NULL,
         actor TEXT NOT NULL,
         from_state TEXT NOT NULL,
         to_state TEXT NOT NULL,
         reason TEXT NOT NULL,
         order_id TEXT
     );
     CREATE INDEX voucher_events_voucher ON {schema}.voucher_events (voucher_id);
     ALTER TABLE {schema}.vouchers ADD COLUMN order_id TEXT;
     CREATE INDEX vouchers_expiry ON {schema}.vouchers (state, expires_at);
     GRANT SELECT, INSERT, UPDATE ON {schema}.orders TO {role};
     GRANT SELECT, INSERT ON {schema}.voucher_events TO {role};
     -- An all-or-nothing import that stocks nothing removes what it staged.
     GRANT DELETE ON {schema}.vouchers TO {role};
     GRANT USAGE ON SEQUENCE {schema}.voucher_events_seq_seq TO {role}",
    "CREATE TABLE {schema}.alerts (
         id TEXT PRIMARY KEY,
         created_at BIGINT NOT NULL,
         detector TEXT NOT NULL,
         severity TEXT NOT NULL,
         subject TEXT NOT NULL,
         tenant TEXT,
         summary TEXT NOT NULL,
         details TEXT NOT NULL,
         audit_seq BIGINT NOT NULL,
         status TEXT NOT NULL,
         acknowledged_by TEXT NOT NULL DEFAULT '',
         acknowledged_at BIGINT NOT NULL DEFAULT 0,
         note TEXT NOT NULL DEFAULT '',
         froze BOOLEAN NOT NULL DEFAULT false
     );
     CREATE TABLE {schema}.frozen_principals (
         principal_id TEXT PRIMARY KEY,
         frozen_at BIGINT NOT NULL,
         alert_id TEXT NOT NULL,
         frozen_by TEXT NOT NULL,
         reason TEXT NOT NULL
     );
     CREATE TABLE {schema}.forwarder_cursors (
         name TEXT PRIMARY KEY,
         seq BIGINT NOT NULL,
         updated_at BIGINT NOT NULL
     );
     GRANT SELECT, INSERT, UPDATE ON {schema}.alerts TO {role};
     GRANT SELECT, INSERT, DELETE ON {schema}.frozen_principals TO {role};
     GRANT SELECT, INSERT, UPDATE ON {schema}.forwarder_cursors TO {role}",
    "CREATE TABLE {schema}.purchases (
         id TEXT PRIMARY KEY,
         tenant TEXT NOT NULL,
         supplier TEXT NOT NULL,
         product_id TEXT NOT NULL,
         face_value BIGINT NOT NULL,
         currency TEXT NOT NULL,
         quantity BIGINT NOT NULL,
         cost BIGINT NOT NULL,
         purpose TEXT NOT NULL,
         state TEXT NOT NULL,
         day TEXT NOT NULL,
         requested_by TEXT NOT NULL,
         approved_by TEXT NOT NULL DEFAULT '',
         charged BIGINT NOT NULL DEFAULT 0,
         codes_received BIGINT NOT NULL DEFAULT 0,
         note TEXT NOT NULL DEFAULT '',
         created_at BIGINT NOT NULL,
         updated_at BIGINT NOT NULL
     );
     CREATE INDEX purchases_spend ON {schema}.purchases (supplier, day, currency);
     CREATE INDEX purchases_state ON {schema}.purchases (state);
     CREATE TABLE {schema}.purchase_lines (
         purchase_id TEXT NOT NULL,
         line BIGINT NOT NULL,
         reference TEXT NOT NULL UNIQUE,
         supplier_order TEXT NOT NULL DEFAULT '',
         state TEXT NOT NULL,
         charged BIGINT NOT NULL DEFAULT 0,
         codes BIGINT NOT NULL DEFAULT 0,
         note TEXT NOT NULL DEFAULT '',
         updated_at BIGINT NOT NULL,
         PRIMARY KEY (purchase_id, line)
     );
     CREATE TABLE {schema}.supplier_credentials (
         supplier TEXT PRIMARY KEY,
         token TEXT NOT NULL,
         set_by TEXT NOT NULL,
         set_at BIGINT NOT NULL
     );
     CREATE INDEX vouchers_source ON {schema}.vouchers (import_id);
     GRANT SELECT, INSERT, UPDATE ON {schema}.purchases TO {role};
     GRANT SELECT, INSERT, UPDATE ON {schema}.purchase_lines TO {role};
     GRANT SELECT, INSERT, UPDATE ON {schema}.supplier_credentials TO {role}",
    // Row seals: the vault's MAC over each access-deciding row (see
    // docs/architecture.md). Rows from before get theirs at the first unseal.
    "ALTER TABLE {schema}.secrets ADD COLUMN seal BYTEA NOT NULL DEFAULT ''::bytea;
     ALTER TABLE {schema}.principals ADD COLUMN seal BYTEA NOT NULL DEFAULT ''::bytea;
     ALTER TABLE {schema}.custom_roles ADD COLUMN seal BYTEA NOT NULL DEFAULT ''::bytea;
     ALTER TABLE {schema}.operators ADD COLUMN seal BYTEA NOT NULL DEFAULT ''::bytea;
     ALTER TABLE {schema}.recovery_codes ADD COLUMN seal BYTEA NOT NULL DEFAULT ''::bytea;
     GRANT UPDATE (seal) ON {schema}.recovery_codes TO {role}",
];

const RECORDS: &[&str] = &["CREATE TABLE {schema}.records (
         token TEXT PRIMARY KEY,
         envelope BYTEA NOT NULL
     );
     CREATE TABLE {schema}.keyring (
         scope TEXT NOT NULL,
         version INTEGER NOT NULL,
         wrapped BYTEA NOT NULL,
         created_at BIGINT NOT NULL,
         PRIMARY KEY (scope, version)
     );
     CREATE TABLE {schema}.meta (
         name TEXT PRIMARY KEY,
         value BYTEA NOT NULL
     );
     GRANT SELECT, INSERT, DELETE ON {schema}.records TO {role};
     GRANT SELECT, INSERT ON {schema}.keyring TO {role};
     GRANT SELECT, INSERT, UPDATE ON {schema}.meta TO {role}"];

const AUDIT: &[&str] = &["CREATE TABLE {schema}.audit_log (
         seq BIGINT PRIMARY KEY CHECK (seq > 0),
         body TEXT NOT NULL,
         mac BYTEA NOT NULL
     );
     GRANT SELECT, INSERT ON {schema}.audit_log TO {role}"];

/// Number of migrations each store's schema has in this build.
pub fn latest_version(store: Store) -> i32 {
    i32::try_from(store.migrations().len()).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_that_could_escape_an_identifier_are_refused() {
        for bad in [
            "",
            "1abc",
            "Strong",
            "a-b",
            "a;drop",
            "a\"b",
            &"x".repeat(41),
        ] {
            assert!(Names::new(bad).is_err(), "{bad}");
        }
        let n = Names::new("sr_t1").unwrap();
        assert_eq!(n.role(Store::Audit), "sr_t1_audit");
        assert!(n.migrations(Store::Audit)[0].contains("sr_t1_audit.audit_log"));
    }
}
