//! Who may use the API: the bearer tokens of `[http] token_file`, one
//! `NAME TOKEN` a line (`#` starts a comment), read once at start-up and
//! refused when the file can be read by anyone but its owner. A token is
//! compared by its SHA-256 digest in constant time; only its name (and,
//! for a refused one, the first eight hex digits of its digest) is ever
//! logged.
//!
//! Every refused request is in the audit log (`authentication-failed`:
//! the token tried, the peer address, the method and path), as Normen's
//! fact sheet on remote access asks for attempts at unauthorised use;
//! every accepted request that changes something is there under its
//! token's name (`api-request`); reads are traced. A flood of refusals
//! from one address gets [`REFUSALS_LOGGED_PER_MINUTE`] rows a minute, the
//! rest counted in the next row.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use helsemelding_store::audit::{AuditEvent, AuditKind};
use openssl::sha::sha256;

use super::problem::Problem;
use super::tls::Peer;
use super::Api;

/// The shortest token accepted: 128 bits as hex.
pub const MIN_TOKEN_CHARS: usize = 32;

/// The named tokens the API accepts.
#[derive(Clone)]
pub struct Tokens {
    known: Vec<(String, [u8; 32])>,
}

impl Tokens {
    /// Reads the token file at `path`, refusing it when group or others
    /// have any access to it, or when a line is not `NAME TOKEN` with a
    /// token of at least [`MIN_TOKEN_CHARS`] characters.
    pub fn load(path: &Path) -> anyhow::Result<Tokens> {
        let fail = |reason: String| anyhow::anyhow!("http.token_file {}: {reason}", path.display());
        let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(fail(format!(
                "mode {mode:03o} lets others than its owner read or change it: chmod 600 it"
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        Tokens::parse(&text).map_err(fail)
    }

    /// The tokens of a file's text.
    pub fn parse(text: &str) -> Result<Tokens, String> {
        let mut known = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(name), Some(token), None) = (words.next(), words.next(), words.next()) else {
                return Err(format!(
                    "line {}: expected `NAME TOKEN` (two words)",
                    number + 1
                ));
            };
            if token.chars().count() < MIN_TOKEN_CHARS {
                return Err(format!(
                    "line {}: the token of {name} is shorter than {MIN_TOKEN_CHARS} characters \
                     (make one with `openssl rand -hex 32`)",
                    number + 1
                ));
            }
            if known.iter().any(|(n, _)| n == name) {
                return Err(format!(
                    "line {}: the name {name} is used twice",
                    number + 1
                ));
            }
            known.push((name.to_owned(), sha256(token.as_bytes())));
        }
        if known.is_empty() {
            return Err("holds no token: add a line `NAME TOKEN`".into());
        }
        Ok(Tokens { known })
    }

    /// The name of the token `presented`, if it is one of ours. Every
    /// known digest is compared, so the time taken says nothing of which.
    pub fn name_of(&self, presented: &str) -> Option<&str> {
        let digest = sha256(presented.as_bytes());
        let mut found = None;
        for (name, known) in &self.known {
            if openssl::memcmp::eq(known, &digest) {
                found = Some(name.as_str());
            }
        }
        found
    }
}

/// Refused requests logged one by one per peer address and minute; the
/// rest are counted and said in the next row, so that a flood of bad
/// tokens cannot fill the audit log (or the disk) at the speed of HTTP.
pub const REFUSALS_LOGGED_PER_MINUTE: u32 = 20;

/// The audit rows of refused requests, per peer address and minute.
#[derive(Default)]
pub struct Refusals {
    by_peer: std::sync::Mutex<HashMap<IpAddr, Window>>,
}

struct Window {
    started: Instant,
    logged: u32,
    unlogged: u64,
}

/// Whether one more refusal gets its own audit row.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Yes, saying how many were not logged before it.
    Log {
        /// Refusals from the same peer counted, not logged, since its last row.
        unlogged: u64,
    },
    /// No: counted for the next row.
    Count,
}

impl Refusals {
    /// One more refusal of a request from `peer` at `now`.
    pub fn admit(&self, peer: IpAddr, now: Instant) -> Admit {
        let mut by_peer = self.by_peer.lock().unwrap_or_else(|p| p.into_inner());
        // Windows of peers gone quiet are dropped, so the map stays small.
        if by_peer.len() > 10_000 {
            by_peer.retain(|_, w| now.duration_since(w.started) < MINUTE);
        }
        let window = by_peer.entry(peer).or_insert(Window {
            started: now,
            logged: 0,
            unlogged: 0,
        });
        if now.duration_since(window.started) >= MINUTE {
            window.started = now;
            window.logged = 0;
        }
        if window.logged < REFUSALS_LOGGED_PER_MINUTE {
            window.logged += 1;
            Admit::Log {
                unlogged: std::mem::take(&mut window.unlogged),
            }
        } else {
            window.unlogged += 1;
            Admit::Count
        }
    }
}

const MINUTE: Duration = Duration::from_secs(60);

/// The token a request presents: `Authorization: Bearer TOKEN`.
fn bearer(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// The first eight hex digits of a token's digest: enough to tell two
/// attempts apart in the log, nothing to guess the token from.
fn fingerprint(token: &str) -> String {
    hex_of(&sha256(token.as_bytes())[..4])
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The middleware: refuses a request without a known token (401, audited),
/// runs the rest, and audits what changed something under the token's name.
pub async fn authenticate(
    State(api): State<Api>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let presented = bearer(&request).map(str::to_owned);
    let Some(name) = presented
        .as_deref()
        .and_then(|token| api.tokens().name_of(token))
        .map(str::to_owned)
    else {
        let tried = match &presented {
            Some(token) => format!("bearer token {}", fingerprint(token)),
            None => "no bearer token".to_owned(),
        };
        match api.refusals().admit(peer.ip(), std::time::Instant::now()) {
            Admit::Log { unlogged } => {
                let mut reason = format!("{tried} from {peer} for {method} {path}");
                if unlogged > 0 {
                    reason += &format!(
                        "; {unlogged} more refused from {} in the minute before, not logged one by one",
                        peer.ip()
                    );
                }
                let mut event = AuditEvent::new(AuditKind::AuthenticationFailed, "api", "refused");
                event.reason = Some(reason);
                api.messenger().audit(event).await;
            }
            Admit::Count => {}
        }
        tracing::warn!(%peer, %method, path, tried, "API request refused for its token");
        return Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a known bearer token is needed (Authorization: Bearer TOKEN)",
        )
        .into_response();
    };
    let response = next.run(request).await;
    let status = response.status();
    if method == Method::GET || method == Method::HEAD {
        tracing::debug!(%peer, %method, path, token = name, %status, "API request");
    } else {
        let mut event = AuditEvent::new(
            AuditKind::ApiRequest,
            format!("api:{name}"),
            status.as_u16().to_string(),
        );
        event.reason = Some(format!("{method} {path} from {peer}"));
        api.messenger().audit(event).await;
        tracing::info!(%peer, %method, path, token = name, %status, "API request");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const EHR: &str = "0123456789abcdef0123456789abcdef";
    const OPS: &str = "fedcba9876543210fedcba9876543210ff";

    #[test]
    fn tokens_are_known_by_name_and_others_are_not() {
        let tokens =
            Tokens::parse(&format!("# the EHR\nehr {EHR}\n\nops {OPS} # on call\n")).unwrap();
        assert_eq!(tokens.name_of(EHR), Some("ehr"));
        assert_eq!(tokens.name_of(OPS), Some("ops"));
        assert_eq!(tokens.name_of(&EHR[1..]), None);
        assert_eq!(tokens.name_of(""), None);
        assert_ne!(fingerprint(EHR), fingerprint(OPS));
        assert_eq!(fingerprint(EHR).len(), 8);
    }

    #[test]
    fn refusals_past_the_minute_s_share_are_counted_and_said_in_the_next_row() {
        let refusals = Refusals::default();
        let (peer, other) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..REFUSALS_LOGGED_PER_MINUTE {
            assert_eq!(refusals.admit(peer, t0), Admit::Log { unlogged: 0 });
        }
        for _ in 0..500 {
            assert_eq!(refusals.admit(peer, t0), Admit::Count);
        }
        assert_eq!(refusals.admit(other, t0), Admit::Log { unlogged: 0 });
        let later = t0 + Duration::from_secs(61);
        assert_eq!(refusals.admit(peer, later), Admit::Log { unlogged: 500 });
        assert_eq!(refusals.admit(peer, later), Admit::Log { unlogged: 0 });
    }

    #[test]
    fn a_bad_token_file_says_which_line_and_why() {
        for (text, says) in [
            ("", "no token"),
            ("ehr\n", "line 1: expected `NAME TOKEN`"),
            ("ehr short\n", "shorter than 32"),
            (
                &format!("a {EHR}\na {OPS}\n") as &str,
                "line 2: the name a is used twice",
            ),
            (&format!("a {EHR} extra\n"), "two words"),
        ] {
            let error = Tokens::parse(text).err().unwrap();
            assert!(error.contains(says), "{text:?}: {error}");
        }
    }

    #[test]
    fn a_token_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.tokens");
        std::fs::write(&path, format!("ehr {EHR}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = Tokens::load(&path).err().unwrap().to_string();
        assert!(
            error.contains("mode 644") && error.contains("chmod 600"),
            "{error}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(Tokens::load(&path).unwrap().name_of(EHR), Some("ehr"));
    }
}
