//! One module per top-level command.

pub mod alerts;
pub mod audit;
pub mod db;
pub mod init;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod operator;
pub mod people;
pub mod principals;
pub mod roles;
pub mod secrets;
pub mod serve;
pub mod suppliers;
pub mod vouchers;

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, Result};
use zeroize::Zeroizing;

/// Reads one line from stdin, prompting on stderr when stdin is a terminal.
/// Returns `None` at end of input.
pub fn read_line(prompt: &str) -> Result<Option<Zeroizing<String>>> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("{prompt}");
        std::io::stderr().flush().ok();
    }
    let mut line = Zeroizing::new(String::new());
    let n = stdin
        .lock()
        .read_line(&mut line)
        .context("could not read stdin")?;
    if n == 0 {
        return Ok(None);
    }
    while line.ends_with('\n') || line.ends_with('\r') {
        line.pop();
    }
    Ok(Some(line))
}

/// Reads a secret without echo when stdin is a terminal (the prompt goes to
/// the terminal), or one line of stdin when it is piped.
pub fn read_secret(prompt: &str) -> Result<Zeroizing<String>> {
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(prompt)
            .map(Zeroizing::new)
            .context("could not read from the terminal");
    }
    read_line(prompt)?.with_context(|| format!("stdin ended before: {}", prompt.trim()))
}
