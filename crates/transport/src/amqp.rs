//! AMQP 1.0 on fe2o3-amqp, for RabbitMQ (the NHN bus) and Azure Service Bus.
//!
//! One connection per [`AmqpTransport`]. Senders share one session; each
//! receiver has a session of its own, because RabbitMQ 3.10 keeps a
//! detached link's unsettled deliveries with its session until the session
//! ends: ending the receiver's session on close (or drop) gives them back.
//! Links are attached lazily, reused, and re-attached (on a new session, or
//! a new connection after capped exponential backoff with jitter) when the
//! broker ends them: on RabbitMQ any attach or disposition error ends the
//! whole session. Every broker call is bounded by
//! [`AmqpOptions::operation_timeout`]; a receiver that cannot reconnect for
//! longer than [`AmqpOptions::unavailable_after`] says so
//! ([`Error::Unavailable`]) instead of looking idle. Because RabbitMQ
//! accepts and drops messages sent to a missing queue behind an exchange,
//! our own queues can be checked to exist ([`Error::NoSuchQueue`]); senders
//! never look at a receiving party's queue.
//! Links are detached, never closed (RabbitMQ 3.10 answers a closing detach
//! with an error), and a closed receiver settles nothing: what it did not
//! settle goes back to the queue. A connection attempt is bounded as a whole
//! by [`AmqpOptions::connect_timeout`]; refused credentials are
//! [`Error::AuthenticationFailed`] at once, never retried.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use fe2o3_amqp::connection::{ConnectionHandle, OpenError};
use fe2o3_amqp::link::delivery::DeliveryInfo;
use fe2o3_amqp::link::CreditMode;
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::messaging::{
    ApplicationProperties, Body, Data, Header, Message as AmqpMessage, MessageId,
    Outcome as AmqpOutcome, Properties,
};
use fe2o3_amqp::types::primitives::{Binary, SimpleValue, Symbol, Timestamp, Value as AmqpValue};
use fe2o3_amqp::types::sasl::SaslCode;
use fe2o3_amqp::{Connection, Session};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::{Delivery, DeliveryToken, Error, Message, Outcome, Value};

/// Address conventions of a broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// RabbitMQ 3.x with the AMQP 1.0 plugin (NHN): senders target
    /// `/exchange/<exchange>/<queue>` (exchange = the URL path) or, without a
    /// path, `/amq/queue/<queue>`; receivers read `/amq/queue/<queue>`.
    #[default]
    RabbitMq,
    /// Azure Service Bus (legacy NHN): plain queue names.
    ServiceBus,
}

/// Settings beyond the URL.
#[derive(Debug, Clone)]
pub struct AmqpOptions {
    /// Address conventions.
    pub dialect: Dialect,
    /// The SASL password, when it does not come in the URL (e.g. read from a
    /// secret file or `HELSEMELDING_BROKER_PASSWORD`). Wins over the URL's.
    pub password: Option<String>,
    /// An extra trusted CA (PEM) beside the system roots, for `amqps://`.
    pub ca_file: Option<PathBuf>,
    /// Sender target template; `{queue}` and `{exchange}` are replaced.
    /// Default from the dialect.
    pub sender_address: Option<String>,
    /// Receiver source template; `{queue}` is replaced. Default from the dialect.
    pub receiver_address: Option<String>,
    /// Bound on every single broker call (connect, attach, send, settle, detach).
    pub operation_timeout: Duration,
    /// Bound on one connection attempt as a whole (TCP, TLS, SASL, AMQP
    /// open); an attempt that takes longer fails with [`Error::Connect`].
    pub connect_timeout: Duration,
    /// How long `send` keeps reconnecting through an outage before it gives up.
    pub send_retry_for: Duration,
    /// How long `receive` keeps reconnecting quietly (answering `None`)
    /// before it reports [`Error::Unavailable`]; it still reconnects on
    /// later calls.
    pub unavailable_after: Duration,
    /// First reconnection delay; doubles per failed attempt.
    pub backoff_min: Duration,
    /// Cap of the reconnection delay.
    pub backoff_max: Duration,
    /// The AMQP container id (default: `helsemelding-<random>`).
    pub container_id: Option<String>,
}

impl Default for AmqpOptions {
    fn default() -> Self {
        AmqpOptions {
            dialect: Dialect::RabbitMq,
            password: None,
            ca_file: None,
            sender_address: None,
            receiver_address: None,
            operation_timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(10),
            send_retry_for: Duration::from_secs(60),
            unavailable_after: Duration::from_secs(15),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            container_id: None,
        }
    }
}

/// Where and how to connect, parsed from the URL once.
#[derive(Clone)]
struct Endpoint {
    host: String,
    port: u16,
    tls: bool,
    user: Option<String>,
    password: Option<String>,
    exchange: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    // Without the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

fn parse_url(raw: &str, password_override: Option<&str>) -> Result<Endpoint, Error> {
    let url = url::Url::parse(raw).map_err(|e| Error::Config(format!("broker URL: {e}")))?;
    let tls = match url.scheme() {
        "amqp" => false,
        "amqps" => true,
        other => {
            return Err(Error::Config(format!(
                "broker URL scheme {other:?}: use amqp or amqps"
            )))
        }
    };
    let host = url
        .host_str()
        .ok_or_else(|| Error::Config("broker URL has no host".into()))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let user = Some(decode(url.username())).filter(|u| !u.is_empty());
    let password = password_override
        .map(str::to_owned)
        .or_else(|| url.password().map(decode));
    let exchange = Some(decode(url.path().trim_matches('/'))).filter(|p| !p.is_empty());
    Ok(Endpoint {
        port: url.port().unwrap_or(if tls { 5671 } else { 5672 }),
        host,
        tls,
        user,
        password,
        exchange,
    })
}

/// The AMQP 1.0 transport.
#[derive(Clone)]
pub struct AmqpTransport {
    shared: Arc<Shared>,
}

struct Shared {
    endpoint: Endpoint,
    options: AmqpOptions,
    container_id: String,
    tls: Option<tokio_rustls::TlsConnector>,
    live: Mutex<Live>,
    closed: AtomicBool,
    /// Source of link ids: a delivery can only be settled on the link it came on.
    next_link_id: AtomicU64,
    /// Queues seen to exist (see [`crate::Transport::check_queue`]).
    known_queues: std::sync::Mutex<HashSet<String>>,
}

#[derive(Default)]
struct Live {
    connection: Option<ConnectionHandle<()>>,
    session: Option<SessionHandle<()>>,
    /// Failed connection attempts in a row (for the backoff).
    failures: u32,
}

impl AmqpTransport {
    /// A transport for `url` (`amqp://[user[:password]@]host[:port][/exchange]`
    /// or `amqps://…`). Connects lazily, on the first link.
    pub fn new(url: &str, options: AmqpOptions) -> Result<AmqpTransport, Error> {
        let endpoint = parse_url(url, options.password.as_deref())?;
        let tls = if endpoint.tls {
            Some(tls_connector(options.ca_file.as_ref())?)
        } else {
            None
        };
        let container_id = options
            .container_id
            .clone()
            .unwrap_or_else(|| format!("helsemelding-{}", uuid::Uuid::new_v4().simple()));
        Ok(AmqpTransport {
            shared: Arc::new(Shared {
                endpoint,
                options,
                container_id,
                tls,
                live: Mutex::new(Live::default()),
                closed: AtomicBool::new(false),
                next_link_id: AtomicU64::new(1),
                known_queues: std::sync::Mutex::new(HashSet::new()),
            }),
        })
    }

    /// The sender target address for `queue` in this transport's dialect.
    pub fn sender_address(&self, queue: &str) -> String {
        let shared = &self.shared;
        let exchange = shared.endpoint.exchange.as_deref();
        let template = match (
            &shared.options.sender_address,
            shared.options.dialect,
            exchange,
        ) {
            (Some(t), _, _) => t.as_str(),
            (None, Dialect::RabbitMq, Some(_)) => "/exchange/{exchange}/{queue}",
            (None, Dialect::RabbitMq, None) => "/amq/queue/{queue}",
            (None, Dialect::ServiceBus, _) => "{queue}",
        };
        template
            .replace("{exchange}", exchange.unwrap_or(""))
            .replace("{queue}", queue)
    }

    /// The receiver source address for `queue` in this transport's dialect.
    pub fn receiver_address(&self, queue: &str) -> String {
        let shared = &self.shared;
        let template = match (&shared.options.receiver_address, shared.options.dialect) {
            (Some(t), _) => t.as_str(),
            (None, Dialect::RabbitMq) => "/amq/queue/{queue}",
            (None, Dialect::ServiceBus) => "{queue}",
        };
        template.replace("{queue}", queue)
    }
}

/// System roots plus the optional extra CA.
fn tls_connector(ca_file: Option<&PathBuf>) -> Result<tokio_rustls::TlsConnector, Error> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::warn!(%error, "skipping a system root certificate");
    }
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let ca_error = |reason: String| Error::CaFile {
            file: path.display().to_string(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
        let mut found = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots
                .add(cert.map_err(|e| ca_error(e.to_string()))?)
                .map_err(|e| ca_error(e.to_string()))?;
            found += 1;
        }
        if found == 0 {
            return Err(ca_error("no PEM certificate in it".into()));
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Capped exponential backoff with jitter (half to full of the capped delay).
fn backoff(min: Duration, max: Duration, failures: u32) -> Duration {
    let capped = min.saturating_mul(1u32 << failures.min(20)).min(max);
    capped.mul_f64(0.5 + fastrand::f64() / 2.0)
}

impl Shared {
    async fn bounded<T, E: std::fmt::Display>(
        &self,
        operation: &'static str,
        queue: &str,
        fut: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<Result<T, String>, Error> {
        let limit = self.options.operation_timeout;
        match tokio::time::timeout(limit, fut).await {
            Ok(result) => Ok(result.map_err(|e| e.to_string())),
            Err(_) => Err(Error::Timeout {
                operation,
                queue: queue.to_owned(),
                seconds: limit.as_secs(),
            }),
        }
    }

    /// A live connection, connecting (once, bounded) if there is none.
    async fn ensure_connection<'a>(
        &self,
        live: &'a mut Live,
        queue: &str,
    ) -> Result<&'a mut ConnectionHandle<()>, Error> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        if live.connection.as_ref().is_none_or(|c| c.is_closed()) {
            live.session = None;
            live.connection = None;
            live.connection = Some(self.connect(queue).await?);
        }
        Ok(live.connection.as_mut().expect("connected above"))
    }

    /// Begins a session on the live connection (bounded). A failure forgets
    /// the connection: it may be half dead.
    async fn begin_session(
        &self,
        live: &mut Live,
        queue: &str,
    ) -> Result<SessionHandle<()>, Error> {
        let connection = self.ensure_connection(live, queue).await?;
        let result = self
            .bounded("begin session", queue, Session::begin(connection))
            .await;
        match result {
            Ok(Ok(session)) => Ok(session),
            Ok(Err(reason)) => {
                live.connection = None;
                Err(Error::Connect {
                    endpoint: format!("{:?}", self.endpoint),
                    reason,
                })
            }
            Err(timeout) => {
                live.connection = None;
                Err(timeout)
            }
        }
    }

    /// A session of its own on the shared connection, for a receiver or a
    /// queue check: ending it gives back every delivery it holds, and an
    /// attach error (which ends it on RabbitMQ) hurts no other link.
    async fn private_session(&self, queue: &str) -> Result<SessionHandle<()>, Error> {
        let mut live = self.live.lock().await;
        let result = self.begin_session(&mut live, queue).await;
        match &result {
            Ok(_) => live.failures = 0,
            Err(_) => live.failures = live.failures.saturating_add(1),
        }
        result
    }

    /// The shared session of the senders, begun if there is none.
    async fn ensure_session<'a>(
        &self,
        live: &'a mut Live,
        queue: &str,
    ) -> Result<&'a mut SessionHandle<()>, Error> {
        let connection_dead = live.connection.as_ref().is_none_or(|c| c.is_closed());
        if connection_dead || live.session.as_ref().is_none_or(|s| s.is_ended()) {
            let session = self.begin_session(live, queue).await?;
            live.session = Some(session);
        }
        Ok(live.session.as_mut().expect("begun above"))
    }

    /// One connection attempt, bounded by `connect_timeout` as a whole.
    async fn connect(&self, queue: &str) -> Result<ConnectionHandle<()>, Error> {
        let limit = self.options.connect_timeout;
        match tokio::time::timeout(limit, self.connect_unbounded(queue)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Connect {
                endpoint: format!("{:?}", self.endpoint),
                reason: format!(
                    "no connection within the connect timeout of {} s",
                    limit.as_secs_f64()
                ),
            }),
        }
    }

    async fn connect_unbounded(&self, queue: &str) -> Result<ConnectionHandle<()>, Error> {
        let endpoint = format!("{:?}", self.endpoint);
        let connect_error = |reason: String| Error::Connect {
            endpoint: endpoint.clone(),
            reason,
        };
        let address = (self.endpoint.host.as_str(), self.endpoint.port);
        let stream = self
            .bounded("connect", queue, TcpStream::connect(address))
            .await?
            .map_err(connect_error)?;
        // fe2o3 leaves Nagle on: one message in flight would wait ~40 ms per round trip.
        stream
            .set_nodelay(true)
            .map_err(|e| connect_error(e.to_string()))?;
        match &self.tls {
            None => self.open(stream, queue).await,
            Some(connector) => {
                let name = rustls::pki_types::ServerName::try_from(self.endpoint.host.clone())
                    .map_err(|e| connect_error(e.to_string()))?;
                // TLS first, no AMQP TLS header: what RabbitMQ expects
                // (fe2o3's `alt_tls_establishment(true)`).
                let tls = self
                    .bounded("TLS handshake", queue, connector.connect(name, stream))
                    .await?;
                self.open(tls.map_err(connect_error)?, queue).await
            }
        }
    }

    async fn open<Io>(&self, stream: Io, queue: &str) -> Result<ConnectionHandle<()>, Error>
    where
        Io: AsyncRead + AsyncWrite + std::fmt::Debug + Send + Unpin + 'static,
    {
        let mut builder = Connection::builder()
            .container_id(self.container_id.clone())
            .hostname(self.endpoint.host.as_str())
            .idle_time_out(60_000u32);
        if let Some(user) = &self.endpoint.user {
            builder = builder.sasl_profile(SaslProfile::Plain {
                username: user.clone(),
                password: self.endpoint.password.clone().unwrap_or_default(),
            });
        }
        let limit = self.options.operation_timeout;
        let opened = tokio::time::timeout(limit, builder.open_with_stream(stream)).await;
        let endpoint = format!("{:?}", self.endpoint);
        match opened {
            Ok(Ok(connection)) => Ok(connection),
            // Wrong user or password: trying again cannot help.
            Ok(Err(OpenError::SaslError {
                code: SaslCode::Auth,
                ..
            })) => Err(Error::AuthenticationFailed {
                endpoint,
                user: self.endpoint.user.clone().unwrap_or_default(),
            }),
            Ok(Err(e)) => Err(Error::Connect {
                endpoint,
                reason: e.to_string(),
            }),
            Err(_) => Err(Error::Timeout {
                operation: "open connection",
                queue: queue.to_owned(),
                seconds: limit.as_secs(),
            }),
        }
    }

    /// Runs `attach` on a live session. On failure the session is dropped
    /// (RabbitMQ ends it on any attach error) so the next attach begins a new one.
    async fn attach<L, F, E>(&self, queue: &str, attach: F) -> Result<L, Error>
    where
        F: for<'s> FnOnce(&'s mut SessionHandle<()>) -> AttachFuture<'s, L, E>,
        E: std::fmt::Display,
    {
        let mut live = self.live.lock().await;
        let session = match self.ensure_session(&mut live, queue).await {
            Ok(session) => session,
            Err(e) => {
                live.failures = live.failures.saturating_add(1);
                return Err(e);
            }
        };
        match self.bounded("attach", queue, attach(session)).await {
            Ok(Ok(link)) => {
                live.failures = 0;
                Ok(link)
            }
            Ok(Err(reason)) => {
                live.session = None;
                Err(attach_error(queue, reason))
            }
            Err(timeout) => {
                // A broker that does not answer an attach: start over.
                live.session = None;
                live.connection = None;
                Err(timeout)
            }
        }
    }

    /// Whether `queue` exists, by attaching a receiver with no credit to
    /// `address` on a session of its own and detaching it again (on RabbitMQ
    /// an attach to a missing queue fails NOT_FOUND and ends the session).
    /// Existence is remembered. Only "not found" is an error: a broker that
    /// refuses to let us read another party's queue tells nothing, so that
    /// is logged and the queue is assumed to exist (not remembered).
    async fn check_queue(&self, queue: &str, address: &str) -> Result<(), Error> {
        if self
            .known_queues
            .lock()
            .expect("not poisoned")
            .contains(queue)
        {
            return Ok(());
        }
        let mut session = self.private_session(queue).await?;
        let name = format!("{queue}-check-{}", uuid::Uuid::new_v4().simple());
        let attach = fe2o3_amqp::Receiver::builder()
            .name(name)
            .source(address.to_owned())
            .credit_mode(CreditMode::Manual)
            .attach(&mut session);
        match self.bounded("check queue", queue, attach).await {
            Ok(Ok(link)) => {
                let detach = async { link.detach().await.map(drop).map_err(|(_, e)| e) };
                let _ = self.bounded("detach", queue, detach).await;
                let _ = self.bounded("end session", queue, session.end()).await;
                self.known_queues
                    .lock()
                    .expect("not poisoned")
                    .insert(queue.to_owned());
                Ok(())
            }
            Ok(Err(reason)) => match attach_error(queue, reason) {
                e @ Error::NoSuchQueue { .. } => Err(e),
                other => {
                    tracing::warn!(queue, error = %other, "cannot check that the queue exists; assuming it does");
                    Ok(())
                }
            },
            Err(timeout) => {
                self.drop_connection().await;
                Err(timeout)
            }
        }
    }

    async fn pause_after_failure(&self) {
        let failures = self.live.lock().await.failures;
        tokio::time::sleep(backoff(
            self.options.backoff_min,
            self.options.backoff_max,
            failures,
        ))
        .await;
    }

    /// Forgets the connection after a call that timed out: it may be half dead.
    async fn drop_connection(&self) {
        let mut live = self.live.lock().await;
        live.session = None;
        live.connection = None;
    }
}

/// An attach refusal: [`Error::NoSuchQueue`] when the broker says the node
/// is not there (AMQP `not-found`), else [`Error::Attach`].
fn attach_error(queue: &str, reason: String) -> Error {
    let squashed: String = reason
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    if squashed.contains("notfound") {
        Error::NoSuchQueue {
            queue: queue.to_owned(),
            reason,
        }
    } else {
        Error::Attach {
            queue: queue.to_owned(),
            reason,
        }
    }
}

/// A link attach in progress, borrowing the session.
type AttachFuture<'s, L, E> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<L, E>> + Send + 's>>;

#[async_trait]
impl crate::Transport for AmqpTransport {
    async fn sender(&self, queue: &str) -> Result<Box<dyn crate::Sender>, Error> {
        // No existence check here: the queue is usually another party's,
        // and attaching a receiver to it (the only way to ask) is an access
        // attempt on someone else's mailbox on NHN's bus. The registry is
        // what says a party's queue exists; our own are checked at start-up
        // (`Transport::check_queue`).
        Ok(Box::new(AmqpSender {
            shared: Arc::clone(&self.shared),
            queue: queue.to_owned(),
            address: self.sender_address(queue),
            link: None,
        }))
    }

    async fn receiver(&self, queue: &str, credit: u32) -> Result<Box<dyn crate::Receiver>, Error> {
        let mut receiver = AmqpReceiver {
            shared: Arc::clone(&self.shared),
            queue: queue.to_owned(),
            address: self.receiver_address(queue),
            credit: credit.max(1),
            session: None,
            link: None,
            link_id: 0,
            outage: None,
        };
        // Attach now so that a missing queue is reported here, not on the first receive.
        receiver.ensure_link().await?;
        Ok(Box::new(receiver))
    }

    async fn check_queue(&self, queue: &str) -> Result<(), Error> {
        self.shared
            .check_queue(queue, &self.receiver_address(queue))
            .await
    }

    async fn close(&self) -> Result<(), Error> {
        self.shared.closed.store(true, Ordering::SeqCst);
        let mut live = self.shared.live.lock().await;
        if let Some(mut session) = live.session.take() {
            let _ = self.shared.bounded("end session", "-", session.end()).await;
        }
        if let Some(mut connection) = live.connection.take() {
            let _ = self
                .shared
                .bounded("close connection", "-", connection.close())
                .await;
        }
        Ok(())
    }
}

struct AmqpSender {
    shared: Arc<Shared>,
    queue: String,
    address: String,
    link: Option<fe2o3_amqp::Sender>,
}

impl AmqpSender {
    async fn ensure_link(&mut self) -> Result<(), Error> {
        if self.link.is_none() {
            let name = format!("{}-sender-{}", self.queue, uuid::Uuid::new_v4().simple());
            let address = self.address.clone();
            let link = self
                .shared
                .attach(&self.queue, |session| {
                    Box::pin(fe2o3_amqp::Sender::attach(session, name, address))
                })
                .await?;
            self.link = Some(link);
        }
        Ok(())
    }
}

#[async_trait]
impl crate::Sender for AmqpSender {
    async fn send(&mut self, message: Message) -> Result<Outcome, Error> {
        let give_up = tokio::time::Instant::now() + self.shared.options.send_retry_for;
        loop {
            let error = match self.ensure_link().await {
                Ok(()) => {
                    let link = self.link.as_mut().expect("attached");
                    let amqp = to_amqp(&message);
                    match self
                        .shared
                        .bounded("send", &self.queue, link.send(amqp))
                        .await
                    {
                        Ok(Ok(outcome)) => return Ok(from_amqp_outcome(outcome)),
                        Ok(Err(reason)) => Error::Send {
                            queue: self.queue.clone(),
                            reason,
                        },
                        Err(timeout) => {
                            self.shared.drop_connection().await;
                            timeout
                        }
                    }
                }
                // The queue or exchange does not exist, or the broker refused
                // our credentials: retrying will not help.
                Err(
                    e @ (Error::Attach { .. }
                    | Error::NoSuchQueue { .. }
                    | Error::AuthenticationFailed { .. }),
                ) => return Err(e),
                Err(e) => e,
            };
            self.link = None;
            if tokio::time::Instant::now() >= give_up || self.shared.closed.load(Ordering::SeqCst) {
                return Err(error);
            }
            // Debug only: the caller gets the last error when send gives up,
            // and a send into an outage should say so once, not per attempt.
            tracing::debug!(queue = %self.queue, %error, "send failed; reconnecting");
            // Never past the bound: the last attempt comes at `give_up`.
            let _ = tokio::time::timeout_at(give_up, self.shared.pause_after_failure()).await;
        }
    }

    async fn close(mut self: Box<Self>) -> Result<(), Error> {
        if let Some(link) = self.link.take() {
            let detach = async { link.detach().await.map(drop).map_err(|(_, e)| e) };
            let _ = self.shared.bounded("detach", &self.queue, detach).await;
        }
        Ok(())
    }
}

/// Receives on a link of its own session: ending the session is what makes
/// RabbitMQ 3.10 give back the deliveries the link holds (a detach alone
/// leaves them with the session), so `close` ends it and so does dropping
/// the receiver (fe2o3 sends `end` when a session handle is dropped).
struct AmqpReceiver {
    shared: Arc<Shared>,
    queue: String,
    address: String,
    credit: u32,
    session: Option<SessionHandle<()>>,
    link: Option<fe2o3_amqp::Receiver>,
    link_id: u64,
    /// Since when reconnecting has been failing, if it is.
    outage: Option<Outage>,
}

/// A run of failed reconnection attempts.
struct Outage {
    started: tokio::time::Instant,
    since: SystemTime,
    last_error: String,
}

impl AmqpReceiver {
    async fn ensure_link(&mut self) -> Result<(), Error> {
        if self.link.is_some() {
            return Ok(());
        }
        if self.session.as_ref().is_none_or(|s| s.is_ended()) {
            self.session = None;
            self.session = Some(self.shared.private_session(&self.queue).await?);
        }
        let session = self.session.as_mut().expect("begun above");
        let name = format!("{}-receiver-{}", self.queue, uuid::Uuid::new_v4().simple());
        let attach = fe2o3_amqp::Receiver::builder()
            .name(name)
            .source(self.address.clone())
            .credit_mode(CreditMode::Auto(self.credit))
            .attach(session);
        match self.shared.bounded("attach", &self.queue, attach).await {
            Ok(Ok(link)) => {
                self.link = Some(link);
                self.link_id = self.shared.next_link_id.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
            Ok(Err(reason)) => {
                // RabbitMQ has ended the session.
                self.session = None;
                Err(attach_error(&self.queue, reason))
            }
            Err(timeout) => {
                self.session = None;
                self.shared.drop_connection().await;
                Err(timeout)
            }
        }
    }

    /// Notes a failed attempt; the outage error once it has lasted too long.
    fn note_failure(&mut self, error: &Error) -> Option<Error> {
        let outage = self.outage.get_or_insert_with(|| Outage {
            started: tokio::time::Instant::now(),
            since: SystemTime::now(),
            last_error: String::new(),
        });
        outage.last_error = error.to_string();
        let down_for = outage.started.elapsed();
        (down_for >= self.shared.options.unavailable_after).then(|| Error::Unavailable {
            queue: self.queue.clone(),
            since: outage.since,
            down_for,
            last_error: outage.last_error.clone(),
        })
    }

    /// Settles `delivery` on the link it came on.
    async fn settle(&mut self, delivery: &Delivery, how: Settle<'_>) -> Result<(), Error> {
        let Some(AmqpToken {
            link_generation,
            info,
        }) = delivery.token().downcast_ref()
        else {
            return Err(Error::Receive {
                queue: self.queue.clone(),
                reason: "delivery from another transport".into(),
            });
        };
        let link = match &self.link {
            Some(link) if *link_generation == self.link_id => link,
            _ => {
                return Err(Error::DeliveryLost {
                    queue: self.queue.clone(),
                })
            }
        };
        let info = info.clone();
        let result = match how {
            Settle::Accept => {
                self.shared
                    .bounded("accept", &self.queue, link.accept(info))
                    .await
            }
            Settle::Release => {
                self.shared
                    .bounded("release", &self.queue, link.release(info))
                    .await
            }
            Settle::Reject(reason) => {
                let error = fe2o3_amqp::types::definitions::Error::new(
                    fe2o3_amqp::types::definitions::AmqpError::NotAllowed,
                    Some(reason.to_owned()),
                    None,
                );
                self.shared
                    .bounded("reject", &self.queue, link.reject(info, error))
                    .await
            }
        };
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => {
                self.link = None;
                Err(Error::Receive {
                    queue: self.queue.clone(),
                    reason,
                })
            }
            Err(timeout) => {
                self.link = None;
                self.shared.drop_connection().await;
                Err(timeout)
            }
        }
    }
}

/// What settles an AMQP delivery: the link it came on and fe2o3's handle.
struct AmqpToken {
    link_generation: u64,
    info: DeliveryInfo,
}

impl std::fmt::Debug for AmqpToken {
    // fe2o3's DeliveryInfo has no Debug; the link is what matters when debugging.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "amqp link {}", self.link_generation)
    }
}

enum Settle<'a> {
    Accept,
    Release,
    Reject(&'a str),
}

#[async_trait]
impl crate::Receiver for AmqpReceiver {
    async fn receive(&mut self, within: Duration) -> Result<Option<Delivery>, Error> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let error = match self.ensure_link().await {
                Ok(()) => {
                    self.outage = None;
                    let link = self.link.as_mut().expect("attached");
                    match tokio::time::timeout_at(deadline, link.recv::<Body<AmqpValue>>()).await {
                        Err(_) => return Ok(None),
                        Ok(Ok(delivery)) => return Ok(Some(self.delivery(delivery))),
                        Ok(Err(e)) => Error::Receive {
                            queue: self.queue.clone(),
                            reason: e.to_string(),
                        },
                    }
                }
                Err(
                    e @ (Error::Attach { .. }
                    | Error::NoSuchQueue { .. }
                    | Error::AuthenticationFailed { .. }),
                ) => return Err(e),
                Err(e) => e,
            };
            self.link = None;
            self.session = None;
            if self.shared.closed.load(Ordering::SeqCst) {
                return Err(Error::Closed);
            }
            tracing::warn!(queue = %self.queue, %error, "receive failed; reconnecting");
            let unavailable = self.note_failure(&error);
            // Back off before answering too, so a caller that calls again at
            // once does not hammer an unreachable broker.
            let paused = tokio::time::timeout_at(deadline, self.shared.pause_after_failure())
                .await
                .is_ok();
            if let Some(unavailable) = unavailable {
                return Err(unavailable);
            }
            if !paused {
                return Ok(None);
            }
        }
    }

    async fn accept(&mut self, delivery: &Delivery) -> Result<(), Error> {
        self.settle(delivery, Settle::Accept).await
    }

    async fn release(&mut self, delivery: &Delivery) -> Result<(), Error> {
        self.settle(delivery, Settle::Release).await
    }

    async fn reject(&mut self, delivery: &Delivery, reason: &str) -> Result<(), Error> {
        self.settle(delivery, Settle::Reject(reason)).await
    }

    async fn close(mut self: Box<Self>) -> Result<(), Error> {
        if let Some(link) = self.link.take() {
            // Detach, not close (RabbitMQ 3.10 answers a closing detach with an error).
            let detach = async { link.detach().await.map(drop).map_err(|(_, e)| e) };
            let _ = self.shared.bounded("detach", &self.queue, detach).await;
        }
        // Ending the session is what gives the unsettled deliveries back.
        if let Some(mut session) = self.session.take() {
            let _ = self
                .shared
                .bounded("end session", &self.queue, session.end())
                .await;
        }
        Ok(())
    }
}

impl AmqpReceiver {
    fn delivery(&self, delivery: fe2o3_amqp::Delivery<Body<AmqpValue>>) -> Delivery {
        let info = DeliveryInfo::from(&delivery);
        let amqp = delivery.into_message();
        let (delivery_count, first_acquirer) = amqp
            .header
            .as_ref()
            .map(|h| (h.delivery_count, h.first_acquirer))
            // No header: AMQP's defaults (first-acquirer false), so the
            // layers above count the delivery rather than assume it is new.
            .unwrap_or((0, false));
        Delivery::new(
            from_amqp(amqp),
            delivery_count,
            first_acquirer,
            self.queue.clone(),
            DeliveryToken::new(AmqpToken {
                link_generation: self.link_id,
                info,
            }),
        )
    }
}

fn from_amqp_outcome(outcome: AmqpOutcome) -> Outcome {
    match outcome {
        AmqpOutcome::Accepted(_) => Outcome::Accepted,
        AmqpOutcome::Rejected(r) => Outcome::Rejected {
            reason: r
                .error
                .map(|e| format!("{:?}: {}", e.condition, e.description.unwrap_or_default()))
                .unwrap_or_default(),
        },
        AmqpOutcome::Released(_) | AmqpOutcome::Modified(_) => Outcome::Released,
        #[allow(unreachable_patterns)]
        _ => Outcome::Released,
    }
}

/// Our message as fe2o3's: strings for ids, header.durable as given, one data section.
fn to_amqp(message: &Message) -> AmqpMessage<Data> {
    let properties = Properties {
        message_id: message.message_id.clone().map(MessageId::String),
        to: message.to.clone(),
        subject: message.subject.clone(),
        reply_to: message.reply_to.clone(),
        correlation_id: message.correlation_id.clone().map(MessageId::String),
        content_type: message.content_type.clone().map(Symbol::from),
        ..Properties::default()
    };
    let header = Header {
        durable: message.durable,
        ttl: message
            .ttl
            .map(|t| t.as_millis().min(u32::MAX as u128) as u32),
        ..Header::default()
    };
    let mut application = ApplicationProperties::default();
    for (name, value) in &message.application_properties {
        let value = match value {
            Value::String(s) => SimpleValue::String(s.clone()),
            Value::Int(v) => SimpleValue::Int(*v),
            Value::Long(v) => SimpleValue::Long(*v),
            Value::Bool(v) => SimpleValue::Bool(*v),
            Value::Timestamp(ms) => SimpleValue::Timestamp(Timestamp::from_milliseconds(*ms)),
        };
        application.0.insert(name.clone(), value);
    }
    AmqpMessage {
        header: Some(header),
        delivery_annotations: None,
        message_annotations: None,
        properties: Some(properties),
        application_properties: Some(application),
        body: Data(Binary::from(message.body.clone())),
        footer: None,
    }
}

fn message_id_text(id: MessageId) -> String {
    match id {
        MessageId::String(s) => s,
        MessageId::Ulong(n) => n.to_string(),
        MessageId::Uuid(u) => uuid::Uuid::from_bytes(u.into_inner()).to_string(),
        MessageId::Binary(b) => b.iter().map(|byte| format!("{byte:02x}")).collect(),
    }
}

/// What peers send, read leniently: any id type as text, narrower and unsigned
/// integers widened, symbols as strings; other property types are skipped.
fn from_amqp(amqp: AmqpMessage<Body<AmqpValue>>) -> Message {
    let mut message = Message {
        durable: false,
        ..Message::default()
    };
    if let Some(h) = amqp.header {
        message.durable = h.durable;
        message.ttl = h.ttl.map(|ms| Duration::from_millis(u64::from(ms)));
    }
    if let Some(p) = amqp.properties {
        message.message_id = p.message_id.map(message_id_text);
        message.correlation_id = p.correlation_id.map(message_id_text);
        message.to = p.to;
        message.reply_to = p.reply_to;
        message.subject = p.subject;
        message.content_type = p.content_type.map(|s| s.0);
    }
    for (name, value) in amqp.application_properties.map(|a| a.0).unwrap_or_default() {
        let value = match value {
            SimpleValue::String(s) => Value::String(s),
            SimpleValue::Symbol(s) => Value::String(s.0),
            SimpleValue::Bool(b) => Value::Bool(b),
            SimpleValue::Byte(v) => Value::Int(i32::from(v)),
            SimpleValue::Short(v) => Value::Int(i32::from(v)),
            SimpleValue::Int(v) => Value::Int(v),
            SimpleValue::Ubyte(v) => Value::Int(i32::from(v)),
            SimpleValue::Ushort(v) => Value::Int(i32::from(v)),
            SimpleValue::Uint(v) => Value::Long(i64::from(v)),
            SimpleValue::Long(v) => Value::Long(v),
            SimpleValue::Ulong(v) => match i64::try_from(v) {
                Ok(v) => Value::Long(v),
                Err(_) => Value::String(v.to_string()),
            },
            SimpleValue::Timestamp(t) => Value::Timestamp(t.milliseconds()),
            other => {
                tracing::debug!(property = %name, kind = ?std::mem::discriminant(&other), "skipping application property of unsupported type");
                continue;
            }
        };
        message.application_properties.insert(name, value);
    }
    message.body = match amqp.body {
        Body::Data(sections) => sections.into_iter().flat_map(|d| d.0.into_vec()).collect(),
        Body::Value(v) => match v.0 {
            AmqpValue::Binary(b) => b.into_vec(),
            AmqpValue::String(s) => s.into_bytes(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transport(url: &str, options: AmqpOptions) -> AmqpTransport {
        AmqpTransport::new(url, options).unwrap()
    }

    #[test]
    fn rabbitmq_senders_use_the_exchange_of_the_url_path() {
        let t = transport(
            "amqps://user@sb.test.nhn.no:5671/NHNTESTServiceBus",
            AmqpOptions::default(),
        );
        assert_eq!(
            t.sender_address("93252_async"),
            "/exchange/NHNTESTServiceBus/93252_async"
        );
        assert_eq!(t.receiver_address("91462_async"), "/amq/queue/91462_async");
    }

    #[test]
    fn rabbitmq_without_a_path_sends_to_the_queue() {
        let t = transport("amqp://her:secret@127.0.0.1:5672", AmqpOptions::default());
        assert_eq!(t.sender_address("91462_sync"), "/amq/queue/91462_sync");
    }

    #[test]
    fn service_bus_uses_plain_queue_names_and_templates_override() {
        let sb = AmqpOptions {
            dialect: Dialect::ServiceBus,
            ..AmqpOptions::default()
        };
        let t = transport("amqps://u@sb.example:5671/x", sb);
        assert_eq!(t.sender_address("91462_async"), "91462_async");
        assert_eq!(t.receiver_address("91462_async"), "91462_async");
        let v2 = AmqpOptions {
            sender_address: Some("/exchanges/{exchange}/{queue}".into()),
            receiver_address: Some("/queues/{queue}".into()),
            ..AmqpOptions::default()
        };
        let t = transport("amqp://u@h/ex", v2);
        assert_eq!(t.sender_address("q"), "/exchanges/ex/q");
        assert_eq!(t.receiver_address("q"), "/queues/q");
    }

    #[test]
    fn url_parts_are_decoded_and_the_separate_password_wins() {
        let e = parse_url(
            "amqps://my%40user:url%3Apass@broker.example/Ex%20Change",
            None,
        )
        .unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.tls),
            ("broker.example", 5671, true)
        );
        assert_eq!(e.user.as_deref(), Some("my@user"));
        assert_eq!(e.password.as_deref(), Some("url:pass"));
        assert_eq!(e.exchange.as_deref(), Some("Ex Change"));
        let e = parse_url("amqp://u:p@h:5682", Some("from-secret")).unwrap();
        assert_eq!(
            (e.port, e.password.as_deref(), e.exchange.as_deref()),
            (5682, Some("from-secret"), None)
        );
        assert!(!format!("{e:?}").contains("from-secret"));
    }

    #[test]
    fn bad_urls_and_ca_files_are_configuration_errors() {
        assert!(matches!(parse_url("http://h", None), Err(Error::Config(_))));
        assert!(matches!(
            parse_url("not a url", None),
            Err(Error::Config(_))
        ));
        let missing = AmqpOptions {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..AmqpOptions::default()
        };
        assert!(matches!(
            AmqpTransport::new("amqps://h", missing),
            Err(Error::CaFile { .. })
        ));
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(10));
        for failures in 0..40 {
            let d = backoff(min, max, failures);
            let full = min.saturating_mul(1 << failures.min(20)).min(max);
            assert!(
                d >= full / 2 && d <= full,
                "failures {failures}: {d:?} vs {full:?}"
            );
        }
        assert!(backoff(min, max, 30) <= max);
    }

    #[test]
    fn messages_convert_both_ways_with_all_properties() {
        let message = Message {
            message_id: Some("id-1".into()),
            to: Some("93252_async".into()),
            reply_to: Some("91462_async".into()),
            correlation_id: Some("c-1".into()),
            subject: Some("DIALOG_INNBYGGER_EKONTAKT".into()),
            content_type: Some(
                "application/pkcs7-mime; smime-type=signed-and-enveloped-data".into(),
            ),
            ttl: Some(Duration::from_secs(15)),
            ..Message::new(b"payload".to_vec())
        }
        .with_property("fromHerId", "91462")
        .with_property("n", 5i32)
        .with_property("big", 1i64 << 40)
        .with_property("flag", true)
        .with_property("at", Value::Timestamp(1_700_000_000_123));
        let amqp = to_amqp(&message);
        assert!(amqp.header.as_ref().unwrap().durable);
        let back = AmqpMessage {
            header: amqp.header,
            delivery_annotations: None,
            message_annotations: None,
            properties: amqp.properties,
            application_properties: amqp.application_properties,
            body: Body::Data(vec![amqp.body].into()),
            footer: None,
        };
        assert_eq!(from_amqp(back), message);
    }
}
