//! The private RabbitMQ node of the test run, as `scripts/test` started it
//! (through `scripts/broker`): where it listens, per-test queues made through
//! the management HTTP API, message counts, and stop/restart for fault tests.
//!
//! The helpers block (HTTP calls, sleeps): from an async test, use a
//! multi-thread runtime (`#[tokio::test(flavor = "multi_thread")]`) or
//! `spawn_blocking`, so the AMQP connection tasks keep running meanwhile.
//!
//! A test that needs the broker calls [`Broker::from_env`]; without the
//! environment `scripts/test` exports it panics and says so, so no broker
//! test can pass without a broker.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The variables `scripts/broker env` prints and `scripts/test` exports.
pub const ENV_AMQP_URL: &str = "HELSEMELDING_TEST_AMQP_URL";
/// `amqps://user:password@localhost:PORT`, the broker's TLS listener.
pub const ENV_AMQPS_URL: &str = "HELSEMELDING_TEST_AMQPS_URL";
/// PEM file of the CA that issued the broker's TLS certificate.
pub const ENV_CA: &str = "HELSEMELDING_TEST_CA";
/// `http://user:password@127.0.0.1:PORT`, the management HTTP API.
pub const ENV_MGMT_URL: &str = "HELSEMELDING_TEST_MGMT_URL";
/// The named direct exchange every test queue is bound to (routing key = queue name).
pub const ENV_EXCHANGE: &str = "HELSEMELDING_TEST_EXCHANGE";
/// A script taking `start`, `stop`, `kill` or `restart` for the private node.
pub const ENV_BROKER_CTL: &str = "HELSEMELDING_TEST_BROKER_CTL";

/// How long a management call or a broker restart may take before the test fails.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Handle on the private broker of this test run.
#[derive(Debug, Clone)]
pub struct Broker {
    amqp_url: String,
    amqps_url: String,
    ca_file: PathBuf,
    mgmt_base: String,
    mgmt_user: String,
    mgmt_password: String,
    exchange: String,
    ctl: PathBuf,
}

/// A durable queue made for one test, with its own dead-letter queue
/// (`<name>_dl`, as NHN's broker names it). Both are deleted on drop.
#[derive(Debug)]
pub struct TestQueue {
    broker: Broker,
    name: String,
    dead_letter: String,
}

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "this test needs the private RabbitMQ broker, but {name} is not set: \
             run the tests with scripts/test (it starts the broker and exports \
             HELSEMELDING_TEST_*), or start one with scripts/broker start and \
             eval \"$(scripts/broker env)\""
        )
    })
}

impl Broker {
    /// The broker `scripts/test` started. Panics with instructions when absent.
    pub fn from_env() -> Broker {
        let mgmt = url_parts(&required_env(ENV_MGMT_URL));
        Broker {
            amqp_url: required_env(ENV_AMQP_URL),
            amqps_url: required_env(ENV_AMQPS_URL),
            ca_file: required_env(ENV_CA).into(),
            mgmt_base: mgmt.base,
            mgmt_user: mgmt.user,
            mgmt_password: mgmt.password,
            exchange: std::env::var(ENV_EXCHANGE).unwrap_or_else(|_| "NHNTestServiceBus".into()),
            ctl: required_env(ENV_BROKER_CTL).into(),
        }
    }

    /// `amqp://her:secret@127.0.0.1:PORT` (no path).
    pub fn amqp_url(&self) -> &str {
        &self.amqp_url
    }

    /// `amqps://her:secret@localhost:PORT` (no path); trust [`Broker::ca_file`].
    pub fn amqps_url(&self) -> &str {
        &self.amqps_url
    }

    /// The CA certificate (PEM) of the broker's TLS listener.
    pub fn ca_file(&self) -> &std::path::Path {
        &self.ca_file
    }

    /// The named direct exchange the test queues are bound to.
    pub fn exchange(&self) -> &str {
        &self.exchange
    }

    /// The management API's base URL, without credentials (see [`Broker::credentials`]).
    pub fn management_url(&self) -> &str {
        &self.mgmt_base
    }

    /// The SASL PLAIN user name and password of the test user.
    pub fn credentials(&self) -> (&str, &str) {
        (&self.mgmt_user, &self.mgmt_password)
    }

    /// Creates a fresh durable queue `<prefix>-<random>` bound to the
    /// exchange, whose rejected or expired messages go to `<name>_dl`.
    pub fn fresh_queue(&self, prefix: &str) -> TestQueue {
        let name = format!(
            "{prefix}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let dead_letter = format!("{name}_dl");
        self.declare_queue(&dead_letter, serde_json::json!({}));
        self.declare_queue(
            &name,
            serde_json::json!({
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": dead_letter,
            }),
        );
        for queue in [&name, &dead_letter] {
            let path = format!("/api/bindings/%2F/e/{}/q/{queue}", self.exchange);
            self.mgmt(
                "POST",
                &path,
                Some(serde_json::json!({ "routing_key": queue })),
            );
        }
        TestQueue {
            broker: self.clone(),
            name,
            dead_letter,
        }
    }

    /// Declares the queues NHN's bus has for a party, `<her_id>_{async,sync,error,syncreply}`,
    /// bound to the exchange and dead-lettering to `<her_id>_dl`, for tests that
    /// need the real names (error reports go to `<sender>_error`). Use a HER-id
    /// unique to the test; the queues are deleted on drop.
    pub fn party_queues(&self, her_id: u32) -> PartyQueues {
        let dead_letter = format!("{her_id}_dl");
        let mut names = vec![dead_letter.clone()];
        self.declare_queue(&dead_letter, serde_json::json!({}));
        for kind in ["async", "sync", "error", "syncreply"] {
            let name = format!("{her_id}_{kind}");
            self.declare_queue(
                &name,
                serde_json::json!({
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": dead_letter,
                }),
            );
            names.push(name);
        }
        for queue in &names {
            let path = format!("/api/bindings/%2F/e/{}/q/{queue}", self.exchange);
            self.mgmt(
                "POST",
                &path,
                Some(serde_json::json!({ "routing_key": queue })),
            );
        }
        PartyQueues {
            broker: self.clone(),
            names,
        }
    }

    fn declare_queue(&self, name: &str, arguments: serde_json::Value) {
        let body =
            serde_json::json!({ "durable": true, "auto_delete": false, "arguments": arguments });
        self.mgmt("PUT", &format!("/api/queues/%2F/{name}"), Some(body));
    }

    /// Messages in `queue` (ready + unacknowledged) as the management API
    /// reports them; its statistics lag by up to a few hundred milliseconds,
    /// so assert with [`Broker::wait_for_count`].
    pub fn message_count(&self, queue: &str) -> u64 {
        let info = self.mgmt("GET", &format!("/api/queues/%2F/{queue}"), None);
        info.get("messages").and_then(|m| m.as_u64()).unwrap_or(0)
    }

    /// Waits until `queue` holds `expected` messages; panics after `within`
    /// with the last count seen.
    pub fn wait_for_count(&self, queue: &str, expected: u64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let seen = self.message_count(queue);
            if seen == expected {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "queue {queue} holds {seen} messages, expected {expected} within {within:?}"
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether the management API knows `queue`.
    pub fn queue_exists(&self, queue: &str) -> bool {
        self.try_mgmt("GET", &format!("/api/queues/%2F/{queue}"), None)
            .is_ok()
    }

    /// Deletes `queue` (if it exists).
    pub fn delete_queue(&self, queue: &str) {
        let _ = self.try_mgmt("DELETE", &format!("/api/queues/%2F/{queue}"), None);
    }

    /// Declares `queue` again without a dead-letter path (no arguments, no
    /// policy), bound to the exchange as before: what a broker set up by
    /// hand may look like. Its messages are lost.
    pub fn redeclare_without_dead_letter(&self, queue: &str) {
        self.delete_queue(queue);
        self.declare_queue(queue, serde_json::json!({}));
        let path = format!("/api/bindings/%2F/e/{}/q/{queue}", self.exchange);
        self.mgmt(
            "POST",
            &path,
            Some(serde_json::json!({ "routing_key": queue })),
        );
    }

    /// Stops the node gracefully; queues and durable messages survive.
    pub fn stop(&self) {
        self.control("stop");
    }

    /// Kills the node at once (as a crash would); durable confirmed messages survive.
    pub fn kill(&self) {
        self.control("kill");
    }

    /// Starts the node again and waits until it accepts connections.
    pub fn start(&self) {
        self.control("start");
    }

    /// Stops and starts the node.
    pub fn restart(&self) {
        self.control("restart");
    }

    fn control(&self, action: &str) {
        let status = Command::new(&self.ctl)
            .arg(action)
            .stdin(std::process::Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("running {} {action}: {e}", self.ctl.display()));
        assert!(
            status.success(),
            "{} {action} failed: {status}",
            self.ctl.display()
        );
    }

    fn mgmt(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> serde_json::Value {
        self.try_mgmt(method, path, body)
            .unwrap_or_else(|e| panic!("management API {method} {path}: {e}"))
    }

    fn try_mgmt(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, String> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(HTTP_TIMEOUT))
            .build()
            .into();
        let url = format!("{}{path}", self.mgmt_base);
        let auth = format!(
            "Basic {}",
            base64_encode(format!("{}:{}", self.mgmt_user, self.mgmt_password).as_bytes())
        );
        let body = body.map(|b| b.to_string());
        let result = match (method, body) {
            ("GET", _) => agent.get(&url).header("authorization", &auth).call(),
            ("DELETE", _) => agent.delete(&url).header("authorization", &auth).call(),
            ("PUT", Some(body)) => agent
                .put(&url)
                .header("authorization", &auth)
                .content_type("application/json")
                .send(body),
            ("POST", Some(body)) => agent
                .post(&url)
                .header("authorization", &auth)
                .content_type("application/json")
                .send(body),
            _ => return Err(format!("unsupported management call {method}")),
        };
        let mut response = result.map_err(|e| e.to_string())?;
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        if text.trim().is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))
    }
}

impl TestQueue {
    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name of its dead-letter queue.
    pub fn dead_letter(&self) -> &str {
        &self.dead_letter
    }
}

/// A party's queues made by [`Broker::party_queues`]; deleted on drop.
#[derive(Debug)]
pub struct PartyQueues {
    broker: Broker,
    names: Vec<String>,
}

impl Drop for PartyQueues {
    fn drop(&mut self) {
        for name in &self.names {
            self.broker.delete_queue(name);
        }
    }
}

impl Drop for TestQueue {
    fn drop(&mut self) {
        self.broker.delete_queue(&self.name);
        self.broker.delete_queue(&self.dead_letter);
    }
}

struct UrlParts {
    base: String,
    user: String,
    password: String,
}

/// Splits `http://user:password@host:port` into base URL and credentials.
fn url_parts(url: &str) -> UrlParts {
    let (scheme, rest) = url.split_once("://").expect("management URL has a scheme");
    let (creds, host) = rest.split_once('@').unwrap_or(("guest:guest", rest));
    let (user, password) = creds.split_once(':').unwrap_or((creds, ""));
    UrlParts {
        base: format!("{scheme}://{}", host.trim_end_matches('/')),
        user: user.into(),
        password: password.into(),
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    use openssl::base64::encode_block;
    encode_block(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn management_url_is_split_into_base_and_credentials() {
        let parts = url_parts("http://her:secret@127.0.0.1:15682/");
        assert_eq!(parts.base, "http://127.0.0.1:15682");
        assert_eq!(parts.user, "her");
        assert_eq!(parts.password, "secret");
    }
}
