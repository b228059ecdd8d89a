//! People at the command line: bootstrap, enrolment, login, step-up, logout.
//!
//! Secrets (the bootstrap token, enrolment code, password, codes) are read
//! without echo from the terminal, or one per line from stdin when it is
//! piped, and never taken from the command line, which other users of the
//! machine can see.

use std::io::IsTerminal;

use anyhow::{Context, Result, bail};
use reqwest::Method;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::{read_line, read_secret};
use crate::cli::ClientArgs;
use crate::client::Client;
use crate::session;

/// A secret from an environment variable, or else asked for.
fn secret_from(var: &str, prompt: &str) -> Result<Zeroizing<String>> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Ok(Zeroizing::new(v.trim().to_owned())),
        _ => read_secret(prompt),
    }
}

fn text<'a>(v: impl Into<Option<&'a Value>>, field: &str) -> &'a str {
    v.into()
        .and_then(|v| v.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// `strongroom operator bootstrap`.
pub async fn bootstrap(admin: &str, officer: &str, args: &ClientArgs) -> Result<()> {
    let client = Client::new(args, "admin")?;
    let token = secret_from("STRONGROOM_BOOTSTRAP_TOKEN", "Bootstrap token: ")?;
    let made = client
        .call_anonymous(
            Method::POST,
            "/v1/sys/bootstrap",
            Some(json!({
                "bootstrap_token": token.as_str(),
                "admin": admin,
                "security_officer": officer,
            })),
        )
        .await?;
    println!("The first administrator and security officer exist. Each enrols once with");
    println!("their own code, shown only now; give the codes to two different people:\n");
    for (role, who) in [
        ("administrator", made.get("admin")),
        ("security officer", made.get("security_officer")),
    ] {
        println!(
            "  {role} '{}': {}",
            text(who, "name"),
            text(who, "enrolment_code")
        );
    }
    println!(
        "\nEach then runs: strongroom enrol --username NAME --url {}",
        client.base()
    );
    Ok(())
}

/// `strongroom enrol`.
pub async fn enrol(username: &str, args: &ClientArgs) -> Result<()> {
    let client = Client::new(args, "admin")?;
    let code = secret_from("STRONGROOM_ENROLMENT_CODE", "Enrolment code: ")?;
    let password = read_secret("New password (12+ characters; a few unrelated words work well): ")?;
    let again = read_secret("Repeat the password: ")?;
    if password.as_str() != again.as_str() {
        bail!("the two passwords differ; nothing was changed");
    }
    let enrolled = client
        .call_anonymous(
            Method::POST,
            "/v1/auth/enrol",
            Some(json!({
                "username": username,
                "enrolment_code": code.as_str(),
                "password": password.as_str(),
            })),
        )
        .await?;
    let uri = Zeroizing::new(text(&enrolled, "otpauth_uri").to_owned());
    println!("Add this account to your authenticator app.");
    if std::io::stdout().is_terminal() {
        let qr = qrcode::QrCode::new(uri.as_bytes()).context("could not draw the QR code")?;
        println!(
            "\n{}",
            qr.render::<qrcode::render::unicode::Dense1x2>()
                .quiet_zone(true)
                .build()
        );
    }
    println!("URI: {}", uri.as_str());
    println!("or type this key: {}\n", text(&enrolled, "totp_secret"));
    println!("Recovery codes, each usable once if you lose the authenticator.");
    println!("Keep them offline; they are shown only now:\n");
    let codes = enrolled.get("recovery_codes").and_then(Value::as_array);
    for c in codes.into_iter().flatten() {
        println!("  {}", c.as_str().unwrap_or_default());
    }
    println!();
    let first = loop {
        let Some(line) = read_line("Code shown by the app now: ")? else {
            bail!("stdin ended before the first code; run `strongroom enrol` again");
        };
        if !line.trim().is_empty() {
            break line;
        }
    };
    client
        .call_anonymous(
            Method::POST,
            "/v1/auth/enrol/confirm",
            Some(json!({
                "username": username,
                "enrolment_code": code.as_str(),
                "totp": first.trim(),
            })),
        )
        .await?;
    println!(
        "Enrolled. Log in with: strongroom login --username {username} --url {}",
        client.base()
    );
    Ok(())
}

/// `strongroom login`.
pub async fn login(username: &str, args: &ClientArgs) -> Result<()> {
    // A fresh client for the server named (any saved session is replaced).
    session::forget()?;
    let client = Client::new(args, "admin")?;
    let password = read_secret("Password: ")?;
    let code = read_secret("Code from the authenticator (or a recovery code): ")?;
    let factor = if code.contains('-') {
        "recovery_code"
    } else {
        "totp"
    };
    let mut body = serde_json::Map::new();
    body.insert("username".into(), json!(username));
    body.insert("password".into(), json!(password.as_str()));
    body.insert(factor.into(), json!(code.trim()));
    let body = Value::Object(body);
    let answer = client
        .call_anonymous(Method::POST, "/v1/auth/login", Some(body))
        .await?;
    save(&client, username, &answer)
}

fn save(client: &Client, username: &str, answer: &Value) -> Result<()> {
    let token = Zeroizing::new(text(answer, "access_token").to_owned());
    if token.is_empty() {
        bail!("the server's answer had no access token");
    }
    let expires_in = answer
        .get("expires_in")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let path = session::save(
        client.base(),
        client.ca_cert().cloned(),
        username,
        &token,
        expires_in,
    )?;
    eprintln!(
        "Logged in as {username} for {} minutes (session in {}, readable only by you).",
        expires_in / 60,
        path.display()
    );
    Ok(())
}

/// `strongroom step-up`.
pub async fn step_up(args: &ClientArgs) -> Result<()> {
    let Some(current) = session::load()? else {
        bail!("not logged in: run `strongroom login --username NAME` first");
    };
    if let Some(url) = &args.url
        && url.trim_end_matches('/') != current.url
    {
        bail!(
            "the session is for {}, not {url}: log in there first",
            current.url
        );
    }
    let client = Client::for_session(&current)?;
    let code = read_secret("Code from the authenticator: ")?;
    let answer = client
        .call_with(
            &current.access_token,
            Method::POST,
            "/v1/auth/step-up",
            Some(json!({"totp": code.trim()})),
        )
        .await?;
    save(&client, &current.username, &answer)
}

/// `strongroom logout`.
pub fn logout() -> Result<()> {
    if session::forget()? {
        eprintln!("Logged out: the session file is gone.");
    } else {
        eprintln!("No session to forget.");
    }
    Ok(())
}
