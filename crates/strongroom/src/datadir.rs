//! The data directory: layout, permissions, and the development key file.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use strongroom_crypto::KeyBytes;
use zeroize::Zeroizing;

/// File name of the development root key.
pub const DEV_KEY_FILE: &str = "DEV-ONLY-UNSAFE-root-key.txt";
/// File name of the dev credentials.
pub const DEV_CREDENTIALS: &str = "dev-credentials.json";

const DEV_KEY_HEADER: &str = "\
# STRONGROOM DEVELOPMENT ROOT KEY -- UNSAFE, NEVER USE IN PRODUCTION
# Whoever can read this file can read every secret in this vault.
# Production vaults keep the root key as Shamir shares: `strongroom init`.
";

/// Paths inside a data directory.
pub struct DataDir {
    /// The directory.
    pub root: PathBuf,
}

impl DataDir {
    /// A data directory at `root` (not created).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The development key file.
    pub fn dev_key_file(&self) -> PathBuf {
        self.root.join(DEV_KEY_FILE)
    }

    /// The dev credentials file.
    pub fn dev_credentials(&self) -> PathBuf {
        self.root.join(DEV_CREDENTIALS)
    }

    /// Directory of generated TLS material.
    pub fn tls_dir(&self) -> PathBuf {
        self.root.join("tls")
    }

    /// Creates the directory with mode 0700 if missing.
    pub fn create(&self) -> Result<()> {
        if !self.root.exists() {
            fs::create_dir_all(&self.root)
                .with_context(|| format!("could not create {}", self.root.display()))?;
        }
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("could not set permissions on {}", self.root.display()))?;
        Ok(())
    }

    /// Refuses a directory that other users can read or enter.
    pub fn check_permissions(&self) -> Result<()> {
        let meta = fs::metadata(&self.root).with_context(|| {
            format!(
                "data directory {} does not exist; create one with `strongroom init --data-dir {}`",
                self.root.display(),
                self.root.display()
            )
        })?;
        if !meta.is_dir() {
            bail!("{} is not a directory", self.root.display());
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "data directory {} has mode {mode:o}: other users can reach it. Fix with `chmod 700 {}`",
                self.root.display(),
                self.root.display()
            );
        }
        Ok(())
    }

    /// Writes the development key file (mode 0600).
    pub fn write_dev_key(&self, key: &KeyBytes) -> Result<()> {
        let hex = Zeroizing::new(data_encoding::HEXLOWER.encode(key.expose()));
        let body = Zeroizing::new(format!("{DEV_KEY_HEADER}{}\n", hex.as_str()));
        write_private(&self.dev_key_file(), body.as_bytes())
    }

    /// Reads the development key file, if there is one.
    pub fn read_dev_key(&self) -> Result<Option<KeyBytes>> {
        let path = self.dev_key_file();
        if !path.exists() {
            return Ok(None);
        }
        let text =
            Zeroizing::new(fs::read_to_string(&path).context("could not read the dev key file")?);
        let line = text
            .lines()
            .find(|l| !l.starts_with('#') && !l.trim().is_empty())
            .context("the dev key file holds no key")?;
        let bytes = Zeroizing::new(
            data_encoding::HEXLOWER
                .decode(line.trim().as_bytes())
                .context("the dev key file is corrupt")?,
        );
        Ok(Some(
            KeyBytes::from_slice(&bytes).context("the dev key file is corrupt")?,
        ))
    }
}

/// Writes a file readable only by its owner, replacing any existing one.
///
/// The contents go to a new file created 0600 beside the target (never an
/// existing file, never through a symbolic link), which is synced and then
/// renamed over the target: the bytes are never readable by anyone else,
/// even for a moment, whatever the old file's mode was.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file name", path.display()))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{}.tmp", std::process::id()));
    let temp = path.with_file_name(temp_name);
    let written = (|| -> Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .with_context(|| format!("could not write {}", temp.display()))?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&temp, path).with_context(|| format!("could not write {}", path.display()))?;
        Ok(())
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written
}
