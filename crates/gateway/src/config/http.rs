//! `[http]`: the local HTTP API of `serve`. Loopback only unless TLS is
//! configured and `allow_remote` says a non-loopback address is meant;
//! every request carries a bearer token from `token_file` (whose
//! permissions are judged when `serve` starts, not here).
//!
//! ```toml
//! [http]
//! listen = "127.0.0.1:8095"       # a non-loopback address needs tls_cert, tls_key and allow_remote = true
//! token_file = "api.tokens"       # one `NAME TOKEN` a line; readable by its owner only
//! # tls_cert = "api.pem"          # then the API speaks HTTPS
//! # tls_key = "api.key"
//! # allow_remote = false
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;

/// The raw `[http]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    #[serde(default = "default_listen")]
    listen: String,
    token_file: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    #[serde(default)]
    allow_remote: bool,
}

fn default_listen() -> String {
    DEFAULT_LISTEN.to_owned()
}

/// Where the API listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8095";

/// The validated `[http]` section.
#[derive(Debug, Clone)]
pub struct Http {
    /// The address to bind.
    pub listen: SocketAddr,
    /// The bearer tokens the API accepts, one `NAME TOKEN` a line.
    pub token_file: PathBuf,
    /// Certificate and key (PEM) when the API speaks HTTPS.
    pub tls: Option<HttpTls>,
}

/// The API's own certificate chain and key.
#[derive(Debug, Clone)]
pub struct HttpTls {
    /// The certificate chain, PEM, ours first.
    pub cert: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
}

pub(super) fn validate_http(
    raw: &RawHttp,
    existing: &dyn Fn(&str, &Path) -> Result<PathBuf>,
) -> Result<Http> {
    let listen: SocketAddr = raw.listen.parse().with_context(|| {
        format!(
            "key http.listen: {:?} is not an address and port such as {DEFAULT_LISTEN}",
            raw.listen
        )
    })?;
    let Some(token_file) = &raw.token_file else {
        bail!(
            "key http.token_file: missing: the API takes only requests with a bearer token; \
             name a file of `NAME TOKEN` lines readable by this user only"
        );
    };
    let token_file = existing("http.token_file", token_file)?;
    let tls = match (&raw.tls_cert, &raw.tls_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some(HttpTls {
            cert: existing("http.tls_cert", cert)?,
            key: existing("http.tls_key", key)?,
        }),
        (Some(_), None) => bail!("key http.tls_key: missing beside http.tls_cert"),
        (None, Some(_)) => bail!("key http.tls_cert: missing beside http.tls_key"),
    };
    if !listen.ip().is_loopback() {
        if tls.is_none() {
            bail!(
                "key http.listen: {listen} is not a loopback address: the API serves health \
                 data and is reached beyond this machine only over TLS (set http.tls_cert and \
                 http.tls_key) and with http.allow_remote = true"
            );
        }
        if !raw.allow_remote {
            bail!(
                "key http.listen: {listen} is not a loopback address: set http.allow_remote = \
                 true to say that the API is meant to be reached from other machines"
            );
        }
    }
    Ok(Http {
        listen,
        token_file,
        tls,
    })
}
