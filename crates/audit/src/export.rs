//! Records as a SIEM takes them: JSON Lines or ArcSight CEF, one record a
//! line, each carrying its sequence number so that a receiver can drop the
//! copies an at-least-once delivery may send twice.

use serde::Serialize;

use crate::{AuditEvent, Outcome};

/// The formats records are exported and forwarded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON object per line: the record's fields and `seq`.
    Jsonl,
    /// ArcSight Common Event Format, revision 0.
    Cef,
}

impl std::str::FromStr for ExportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "jsonl" => Ok(Self::Jsonl),
            "cef" => Ok(Self::Cef),
            other => Err(format!("unknown format '{other}': use jsonl or cef")),
        }
    }
}

#[derive(Serialize)]
struct Numbered<'a> {
    seq: u64,
    #[serde(flatten)]
    event: &'a AuditEvent,
}

/// One record as a line in `format`, without the line break.
pub fn format_record(format: ExportFormat, seq: u64, event: &AuditEvent, version: &str) -> String {
    match format {
        ExportFormat::Jsonl => jsonl(seq, event),
        ExportFormat::Cef => cef(seq, event, version),
    }
}

/// The record as one line of JSON.
pub fn jsonl(seq: u64, event: &AuditEvent) -> String {
    // Serializing plain strings and numbers cannot fail; an empty object
    // would still be a line, never a panic.
    let line = serde_json::to_string(&Numbered { seq, event }).unwrap_or_else(|_| "{}".into());
    // JSON escapes C0 controls itself; DEL, C1 controls and the Unicode
    // line and paragraph separators it leaves raw, and they can only be
    // inside strings, so `\u` escapes keep the line the same JSON.
    line.chars()
        .fold(String::with_capacity(line.len()), |mut out, c| {
            if is_control(c) {
                out.push_str(&format!("\\u{:04x}", c as u32));
            } else {
                out.push(c);
            }
            out
        })
}

/// Characters no line of an export carries raw: every Unicode control
/// (C0, DEL, C1) and the line and paragraph separators.
fn is_control(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

/// `text` with every control character (but those `keep` names) written
/// as visible text, `\x00` or `\u0085`, its backslash escaped, so a CEF
/// reader sees the characters' names and never the characters.
fn visible_controls(text: &str, keep: &[char]) -> String {
    text.chars()
        .fold(String::with_capacity(text.len()), |mut out, c| {
            if is_control(c) && !keep.contains(&c) {
                if (c as u32) < 0x100 {
                    out.push_str(&format!("\\\\x{:02x}", c as u32));
                } else {
                    out.push_str(&format!("\\\\u{:04x}", c as u32));
                }
            } else {
                out.push(c);
            }
            out
        })
}

/// CEF severity (0-10): a denial is worth a look, a failure more.
fn severity(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Allowed => 3,
        Outcome::Denied => 6,
        Outcome::Failed => 8,
    }
}

/// Header fields escape the backslash and the bar; control characters
/// (line breaks included: a header cannot hold one) become visible text.
fn header(text: &str) -> String {
    visible_controls(&text.replace('\\', "\\\\").replace('|', "\\|"), &[])
}

/// Extension values escape the backslash, the equals sign and line breaks;
/// every other control character becomes visible text.
fn value(text: &str) -> String {
    visible_controls(
        &text
            .replace('\\', "\\\\")
            .replace('=', "\\=")
            .replace('\n', "\\n")
            .replace('\r', "\\r"),
        &[],
    )
}

/// The record as one CEF line: standard keys where CEF has them
/// (`externalId` for the sequence number, `rt`, `act`, `outcome`, `suid`,
/// `suser`, `src`, `reason`, `cnt` for a batch's items), labelled custom
/// strings for the rest.
pub fn cef(seq: u64, event: &AuditEvent, version: &str) -> String {
    let outcome = match event.outcome {
        Outcome::Allowed => "allowed",
        Outcome::Denied => "denied",
        Outcome::Failed => "failed",
    };
    let mut ext: Vec<(&str, String)> = vec![("externalId", seq.to_string())];
    if let Some(ms) = crate::search::time_ms(&event.time) {
        ext.push(("rt", ms.to_string()));
    }
    ext.push(("act", event.action.clone()));
    ext.push(("outcome", outcome.into()));
    ext.push(("suid", event.actor.clone()));
    if let Some(name) = &event.actor_name {
        ext.push(("suser", name.clone()));
    }
    if let Some(addr) = &event.client_addr {
        // `src` must be an address; anything else goes in a custom field.
        match addr.parse::<std::net::IpAddr>() {
            Ok(ip) => ext.push(("src", ip.to_string())),
            Err(_) => {
                ext.push(("cs6Label", "client".into()));
                ext.push(("cs6", addr.clone()));
            }
        }
    }
    if let Some(reason) = &event.reason {
        ext.push(("reason", reason.clone()));
    }
    let labelled = [
        ("cs1Label", "cs1", "tenant", event.tenant.as_ref()),
        ("cs2Label", "cs2", "target", event.target.as_ref()),
        ("cs3Label", "cs3", "requestId", Some(&event.request_id)),
        ("cs4Label", "cs4", "purpose", event.purpose.as_ref()),
        ("cs5Label", "cs5", "customer", event.customer.as_ref()),
    ];
    for (label_key, key, label, text) in labelled {
        if let Some(text) = text {
            ext.push((label_key, label.into()));
            ext.push((key, text.clone()));
        }
    }
    if let Some(items) = &event.items {
        ext.push(("cnt", items.len().to_string()));
    }
    let extension = ext
        .iter()
        .map(|(k, v)| format!("{k}={}", value(v)))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "CEF:0|Strongroom|Strongroom|{}|{}|{} {}|{}|{}",
        header(version),
        header(&event.action),
        header(&event.action),
        outcome,
        severity(event.outcome),
        extension
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> AuditEvent {
        AuditEvent {
            time: "2026-11-30T12:00:00.250Z".into(),
            request_id: "req_1".into(),
            actor: "pr_1".into(),
            actor_name: Some("till|7".into()),
            action: "secret.reveal".into(),
            tenant: Some("acme".into()),
            target: Some("tok_abc".into()),
            outcome: Outcome::Denied,
            reason: Some("a=b\\c\nd".into()),
            purpose: None,
            customer: None,
            client_addr: Some("192.0.2.7".into()),
            items: None,
        }
    }

    #[test]
    fn jsonl_carries_the_sequence_number_and_every_field() {
        let line = jsonl(42, &event());
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["seq"], 42);
        assert_eq!(v["action"], "secret.reveal");
        assert_eq!(v["actor_name"], "till|7");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn no_control_character_reaches_an_export_line() {
        let mut e = event();
        e.reason = Some("a\u{0}b\u{1b}[31m\u{7f}c\u{85}d\u{2028}e\tf".into());
        e.actor_name = Some("x\u{0}|y".into());
        e.action = "secret.reveal\u{7}".into();
        for line in [cef(1, &e, "0.1.0"), jsonl(1, &e)] {
            assert!(!line.chars().any(is_control), "{line:?}");
        }
        let c = cef(1, &e, "0.1.0");
        assert!(
            c.contains("reason=a\\\\x00b\\\\x1b[31m\\\\x7fc\\\\x85d\\\\u2028e\\\\x09f"),
            "{c}"
        );
        // JSONL keeps the very characters, escaped: it parses back to them.
        let v: serde_json::Value = serde_json::from_str(&jsonl(1, &e)).unwrap();
        assert_eq!(v["reason"], e.reason.unwrap().as_str());
    }

    #[test]
    fn cef_escapes_what_would_break_a_field() {
        let line = cef(42, &event(), "0.1.0");
        assert!(line.starts_with(
            "CEF:0|Strongroom|Strongroom|0.1.0|secret.reveal|secret.reveal denied|6|"
        ));
        assert!(line.contains("externalId=42 rt=1796040000250 act=secret.reveal outcome=denied"));
        assert!(line.contains("suser=till|7"), "{line}");
        assert!(line.contains("reason=a\\=b\\\\c\\nd"), "{line}");
        assert!(line.contains("src=192.0.2.7"));
        assert!(line.contains("cs1Label=tenant cs1=acme"));
        assert!(!line.contains('\n'));
    }
}
