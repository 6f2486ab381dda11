//! How the demo tells what happened: one line per event, for a person
//! (time, who → whom, what, outcome) or as JSON lines for programs. Lines
//! carry identifiers only, never payloads or keys.

use chrono::{DateTime, Utc};
use serde_json::json;

/// A party as the demo names it: HER-id and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub her_id: u32,
    pub name: String,
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.her_id, self.name)
    }
}

/// One event of one step.
#[derive(Clone, Debug)]
pub struct Line {
    /// A stable identifier of the step and event, e.g. `statistics.delivered`.
    pub step: String,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Who acted.
    pub from: Actor,
    /// Towards whom, when anyone.
    pub to: Option<Actor>,
    /// What was done, e.g. `IPLOS statistics (message 1f3c5a2b)`.
    pub what: String,
    /// How it ended, and why that matters.
    pub outcome: String,
    /// Whether this is the outcome the demo expects.
    pub ok: bool,
    /// The AMQP message-id concerned, when any.
    pub message_id: Option<String>,
}

/// Prints lines as they come and remembers the ones that failed.
pub struct Reporter {
    json: bool,
    lines: usize,
    failed: Vec<String>,
}

impl Reporter {
    /// A reporter printing text, or JSON lines when `json`.
    pub fn new(json: bool) -> Self {
        Reporter {
            json,
            lines: 0,
            failed: Vec::new(),
        }
    }

    /// Prints a line of explanation (text mode only: JSON readers want events).
    pub fn note(&self, text: &str) {
        if !self.json {
            println!("{text}");
        }
    }

    /// Prints an event line.
    pub fn line(&mut self, line: Line) {
        self.lines += 1;
        if !line.ok {
            self.failed.push(line.step.clone());
        }
        let text = if self.json {
            to_json(&line)
        } else {
            to_text(&line)
        };
        println!("{text}");
    }

    /// Prints the verdict; true when every line had its expected outcome.
    pub fn finish(&self) -> bool {
        let ok = self.failed.is_empty() && self.lines > 0;
        if self.json {
            println!(
                "{}",
                json!({ "step": "summary", "ok": ok, "events": self.lines, "failed": self.failed })
            );
        } else if ok {
            println!(
                "\nEvery step had the expected outcome ({} events).",
                self.lines
            );
        } else {
            println!(
                "\nFAILED: these steps did not have the expected outcome: {}",
                self.failed.join(", ")
            );
        }
        ok
    }
}

/// `8` first characters of a message-id: enough to tell messages apart on
/// screen; the JSON form carries the whole id.
pub fn short_id(message_id: &str) -> String {
    message_id.chars().take(8).collect()
}

/// `16:02:11.204  91462 Eksempel kommune → 4210 Helsedirektoratet  IPLOS statistics (message 1f3c5a2b)  sent: …`
pub fn to_text(line: &Line) -> String {
    let who = match &line.to {
        Some(to) => format!("{} → {}", line.from, to),
        None => line.from.to_string(),
    };
    let outcome = if line.ok {
        line.outcome.clone()
    } else {
        format!("FAILED: {}", line.outcome)
    };
    format!(
        "{}  {who:<48}  {:<40}  {outcome}",
        line.at.format("%H:%M:%S%.3f"),
        line.what
    )
}

/// The line as one JSON object.
pub fn to_json(line: &Line) -> String {
    let actor = |a: &Actor| json!({ "her_id": a.her_id, "name": a.name });
    json!({
        "step": line.step,
        "time": line.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "from": actor(&line.from),
        "to": line.to.as_ref().map(actor),
        "what": line.what,
        "outcome": line.outcome,
        "ok": line.ok,
        "message_id": line.message_id,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn line(ok: bool) -> Line {
        Line {
            step: "statistics.sent".into(),
            at: Utc.with_ymd_and_hms(2026, 11, 23, 16, 2, 11).unwrap()
                + chrono::Duration::milliseconds(204),
            from: Actor {
                her_id: 91462,
                name: "Eksempel kommune".into(),
            },
            to: Some(Actor {
                her_id: 4210,
                name: "Helsedirektoratet".into(),
            }),
            what: "IPLOS statistics (message 1f3c5a2b)".into(),
            outcome: "sent".into(),
            ok,
            message_id: Some("1f3c5a2b-0000-4000-8000-000000000000".into()),
        }
    }

    #[test]
    fn text_lines_read_time_who_what_outcome() {
        let text = to_text(&line(true));
        assert!(
            text.starts_with("16:02:11.204  91462 Eksempel kommune → 4210 Helsedirektoratet "),
            "{text}"
        );
        // `what` is padded to 40 characters, then two spaces.
        let what = "IPLOS statistics (message 1f3c5a2b)";
        assert!(
            text.ends_with(&format!("{what}{}sent", " ".repeat(40 - what.len() + 2))),
            "{text}"
        );
        assert!(to_text(&line(false)).ends_with("  FAILED: sent"));
    }

    #[test]
    fn json_lines_carry_the_whole_message_id_and_the_verdict() {
        let value: serde_json::Value = serde_json::from_str(&to_json(&line(false))).unwrap();
        assert_eq!(value["step"], "statistics.sent");
        assert_eq!(value["time"], "2026-11-23T16:02:11.204Z");
        assert_eq!(value["from"]["her_id"], 91462);
        assert_eq!(value["to"]["name"], "Helsedirektoratet");
        assert_eq!(value["ok"], false);
        assert_eq!(value["message_id"], "1f3c5a2b-0000-4000-8000-000000000000");
    }

    #[test]
    fn failures_are_remembered_by_step() {
        let mut reporter = Reporter::new(true);
        reporter.line(line(true));
        assert!(reporter.failed.is_empty());
        let mut bad = line(false);
        bad.step = "spoof.reported".into();
        reporter.line(bad);
        assert_eq!(reporter.failed, ["spoof.reported"]);
        assert!(!reporter.finish());
        assert!(!Reporter::new(true).finish(), "no events is no success");
        assert_eq!(short_id("1f3c5a2b-0000"), "1f3c5a2b");
    }
}
