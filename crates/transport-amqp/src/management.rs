//! RabbitMQ's management API, read only: what the broker says of one queue
//! (its message and consumer counts, and where it dead-letters to). AMQP
//! 1.0 cannot ask a broker either, so `queues` and the dead-letter check at
//! the start of `listen` come here. The answers are network bytes: they are
//! read with a size bound and judged strictly ([`QueueInfo::from_json`]).
//!
//! ```no_run
//! # #[cfg(feature = "client")]
//! # async fn show() -> Result<(), helsemelding_transport_amqp::management::ManagementError> {
//! use helsemelding_transport_amqp::management::Management;
//! let base = url::Url::parse("http://127.0.0.1:15672").unwrap();
//! let management = Management::new(&base, "her", Some("secret"))?;
//! if let Some(queue) = management.queue("91462_async").await? {
//!     println!("{} messages, {} consumers", queue.messages, queue.consumers);
//! }
//! # Ok(())
//! # }
//! ```

/// Largest answer read for one queue: RabbitMQ's are a few KiB.
pub const MAX_ANSWER: usize = 1024 * 1024;
#[cfg(feature = "client")]
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What went wrong asking the management API; `url` never holds a password.
#[cfg(feature = "client")]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManagementError {
    /// The HTTP client could not be set up.
    #[error("setting up the management API client: {reason}")]
    Client {
        /// Why.
        reason: String,
    },
    /// The request failed on the way (connection, timeout, TLS).
    #[error("management API {url}: {reason}")]
    Request {
        /// The URL asked.
        url: String,
        /// Why.
        reason: String,
    },
    /// The API answered with an error status (401: wrong user or password).
    #[error("management API {url} answered {status}")]
    Status {
        /// The URL asked.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The answer is not what RabbitMQ sends.
    #[error("management API {url}: {reason}")]
    Answer {
        /// The URL asked.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Where a queue dead-letters to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetterPath {
    /// To this exchange (`""`: the default exchange, by routing key).
    Exchange(String),
    /// Nowhere: the broker deletes what is rejected.
    None,
}

/// What the management API says of one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    /// Messages in it, ready and unacknowledged.
    pub messages: u64,
    /// Consumers attached.
    pub consumers: u64,
    /// Its `x-dead-letter-exchange` argument, else its effective policy's
    /// `dead-letter-exchange`.
    pub dead_letter: DeadLetterPath,
}

impl QueueInfo {
    /// Reads RabbitMQ's `GET /api/queues/{vhost}/{name}` answer. RabbitMQ
    /// leaves the message figures out until its first statistics round for
    /// a new queue: absent means none counted yet. Anything else that is
    /// not a count or an exchange name is an error, never a guess.
    pub fn from_json(body: &[u8]) -> Result<QueueInfo, String> {
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("not a JSON answer ({e})"))?;
        let object = value.as_object().ok_or("not a JSON object")?;
        let count = |key: &str| -> Result<u64, String> {
            match object.get(key) {
                None | Some(serde_json::Value::Null) => Ok(0),
                Some(v) => v.as_u64().ok_or_else(|| format!("{key} is not a count")),
            }
        };
        let exchange = |section: &str, key: &str| -> Result<Option<String>, String> {
            let Some(map) = object.get(section).and_then(|s| s.as_object()) else {
                // RabbitMQ gives `[]` or nothing where no policy applies.
                return Ok(None);
            };
            match map.get(key) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(name)) => Ok(Some(name.clone())),
                Some(_) => Err(format!("{section}.{key} is not an exchange name")),
            }
        };
        let dead_letter = match exchange("arguments", "x-dead-letter-exchange")? {
            Some(name) => Some(name),
            None => exchange("effective_policy_definition", "dead-letter-exchange")?,
        };
        Ok(QueueInfo {
            messages: count("messages")?,
            consumers: count("consumers")?,
            dead_letter: dead_letter.map_or(DeadLetterPath::None, DeadLetterPath::Exchange),
        })
    }
}

/// A client of one broker's management API, with the broker user's
/// credentials (basic authentication, as RabbitMQ asks).
#[cfg(feature = "client")]
pub struct Management {
    client: reqwest::Client,
    base: url::Url,
    user: String,
    password: String,
}

#[cfg(feature = "client")]
impl std::fmt::Debug for Management {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Management")
            .field("base", &self.base.as_str())
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "client")]
impl Management {
    /// A client of the API at `base` (no credentials in it) as `user`.
    pub fn new(
        base: &url::Url,
        user: &str,
        password: Option<&str>,
    ) -> Result<Management, ManagementError> {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| ManagementError::Client {
                reason: e.to_string(),
            })?;
        Ok(Management {
            client,
            base: base.clone(),
            user: user.to_owned(),
            password: password.unwrap_or_default().to_owned(),
        })
    }

    /// The queue `name` in the default virtual host `/` (NHN's); `None`:
    /// no such queue.
    pub async fn queue(&self, name: &str) -> Result<Option<QueueInfo>, ManagementError> {
        let url = format!(
            "{}/api/queues/%2F/{}",
            self.base.as_str().trim_end_matches('/'),
            url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>()
        );
        let request_failed = |e: reqwest::Error| ManagementError::Request {
            url: url.clone(),
            reason: e.without_url().to_string(),
        };
        let response = self
            .client
            .get(&url)
            .basic_auth(&self.user, Some(&self.password))
            .send()
            .await
            .map_err(request_failed)?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(ManagementError::Status {
                url,
                status: status.as_u16(),
            });
        }
        let body =
            read_limited(response, MAX_ANSWER)
                .await
                .map_err(|reason| ManagementError::Answer {
                    url: url.clone(),
                    reason,
                })?;
        QueueInfo::from_json(&body)
            .map(Some)
            .map_err(|reason| ManagementError::Answer { url, reason })
    }
}

#[cfg(feature = "client")]
async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > limit {
            return Err(format!("answer larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(body: &[u8]) -> (u64, u64) {
        let info = QueueInfo::from_json(body).unwrap();
        (info.messages, info.consumers)
    }

    #[test]
    fn reads_the_counts_of_an_answer() {
        let body =
            br#"{"name":"91462_async","messages":3,"messages_ready":2,"consumers":1,"vhost":"/"}"#;
        assert_eq!(counts(body), (3, 1));
        // A queue the statistics have not reached yet.
        assert_eq!(counts(br#"{"name":"x","consumers":0}"#), (0, 0));
    }

    #[test]
    fn refuses_garbage_truncated_and_wrongly_typed_answers() {
        let full = br#"{"messages":3,"consumers":1}"#;
        for cut in 0..full.len() - 1 {
            assert!(QueueInfo::from_json(&full[..cut]).is_err(), "cut at {cut}");
        }
        for bad in [
            &b"\xff\xfe garbage"[..],
            b"[]",
            b"42",
            br#"{"messages":-1}"#,
            br#"{"messages":"3"}"#,
            br#"{"messages":1.5}"#,
            b"{\"arguments\":",
            br#"{"arguments":{"x-dead-letter-exchange":5}}"#,
        ] {
            assert!(QueueInfo::from_json(bad).is_err(), "{bad:?}");
        }
        let huge = format!(
            "{{\"messages\":1,\"pad\":\"{}\"}}",
            "x".repeat(2 * MAX_ANSWER)
        );
        assert_eq!(QueueInfo::from_json(huge.as_bytes()).unwrap().messages, 1);
    }

    #[test]
    fn reads_the_dead_letter_path_from_the_arguments_or_the_policy() {
        let path = |body: &[u8]| QueueInfo::from_json(body).unwrap().dead_letter;
        let by_argument = br#"{"name":"91462_async","arguments":{"x-dead-letter-exchange":"","x-dead-letter-routing-key":"91462_dl"},"effective_policy_definition":[]}"#;
        assert_eq!(path(by_argument), DeadLetterPath::Exchange(String::new()));
        let by_policy = br#"{"arguments":{},"policy":"dl","effective_policy_definition":{"dead-letter-exchange":"dlx"}}"#;
        assert_eq!(path(by_policy), DeadLetterPath::Exchange("dlx".into()));
        for nowhere in [
            &br#"{"arguments":{},"effective_policy_definition":[]}"#[..],
            br#"{"arguments":{"x-queue-type":"quorum"},"effective_policy_definition":{"max-length":10}}"#,
            br#"{"name":"q"}"#,
            br#"{"arguments":{"x-dead-letter-exchange":null}}"#,
        ] {
            assert_eq!(
                path(nowhere),
                DeadLetterPath::None,
                "{}",
                String::from_utf8_lossy(nowhere)
            );
        }
    }
}
