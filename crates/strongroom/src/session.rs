//! A person's CLI session: the access token `strongroom login` obtained,
//! kept in a file only its owner can read, for the token's short life.
//!
//! The file is `$STRONGROOM_SESSION` if set, else
//! `$XDG_RUNTIME_DIR/strongroom-session.json` (a per-user directory that
//! lives in memory and is emptied at logout), else
//! `~/.config/strongroom/session.json`. It is written 0600 through a new
//! file and a rename; an expired session is deleted when next read, and
//! `strongroom logout` deletes it at once.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::datadir::write_private;

/// What a session file holds.
#[derive(Serialize, Deserialize)]
pub struct Session {
    /// The server it is for.
    pub url: String,
    /// The CA certificate trusted for that server.
    pub ca_cert: Option<PathBuf>,
    /// Who logged in.
    pub username: String,
    /// The access token.
    pub access_token: String,
    /// When the token expires, Unix seconds.
    pub expires_at: i64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Where the session file lives.
pub fn path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("STRONGROOM_SESSION") {
        return Ok(PathBuf::from(p));
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
        return Ok(PathBuf::from(dir).join("strongroom-session.json"));
    }
    let home = std::env::var_os("HOME")
        .context("cannot place the session file: set STRONGROOM_SESSION or HOME")?;
    Ok(PathBuf::from(home).join(".config/strongroom/session.json"))
}

/// The saved session, if there is one that has not expired.
pub fn load() -> Result<Option<Session>> {
    let path = path()?;
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("could not read {}", path.display())),
    };
    // Only a file of ours that nobody else can read or change is trusted:
    // it names the server and the CA the CLI will send a token to.
    let meta = std::fs::metadata(&path)?;
    let me = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    if meta.permissions().mode() & 0o077 != 0 || me.is_some_and(|uid| uid != meta.uid()) {
        bail!(
            "{} is readable or writable by others, or not yours: refusing it (run `strongroom logout`, then log in again)",
            path.display()
        );
    }
    let session: Session = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a Strongroom session", path.display()))?;
    if session.expires_at <= now_secs() {
        let _ = std::fs::remove_file(&path);
        return Ok(None);
    }
    Ok(Some(session))
}

/// Saves a session for `expires_in` seconds from now; returns the file.
pub fn save(
    url: &str,
    ca_cert: Option<PathBuf>,
    username: &str,
    access_token: &str,
    expires_in: i64,
) -> Result<PathBuf> {
    let path = path()?;
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("could not create {}", dir.display()))?;
    }
    let session = Session {
        url: url.to_owned(),
        ca_cert,
        username: username.to_owned(),
        access_token: access_token.to_owned(),
        expires_at: now_secs().saturating_add(expires_in),
    };
    let bytes = zeroize::Zeroizing::new(serde_json::to_vec(&session)?);
    write_private(&path, &bytes)?;
    Ok(path)
}

/// Deletes the session file; true if there was one.
pub fn forget() -> Result<bool> {
    let path = path()?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("could not delete {}", path.display())),
    }
}
