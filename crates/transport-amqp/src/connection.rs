//! The one connection of a transport and what its links share ([`Shared`]):
//! the connection and the senders' session, opened on first use and opened
//! again after the broker ended them; every broker call bounded by the
//! operation timeout; link attach on the shared session; a receiver's
//! private session; the check that one of our queues exists. The decisions
//! (backoff, which failures are final) are `reconnect`'s.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use fe2o3_amqp::connection::{ConnectionHandle, OpenError};
use fe2o3_amqp::link::CreditMode;
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::sasl::SaslCode;
use fe2o3_amqp::{Connection, Session};
use helsemelding_transport::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::endpoint::{tls_connector, Endpoint};
use crate::options::AmqpOptions;
use crate::reconnect::{Attempts, Backoff};

/// What every sender and receiver of one transport shares.
pub(crate) struct Shared {
    pub endpoint: Endpoint,
    pub options: AmqpOptions,
    container_id: String,
    tls: Option<tokio_rustls::TlsConnector>,
    live: Mutex<Live>,
    closed: AtomicBool,
    /// Source of link ids: a delivery can only be settled on the link it came on.
    next_link_id: AtomicU64,
    /// Queues seen to exist (see [`Shared::check_queue`]).
    known_queues: std::sync::Mutex<HashSet<String>>,
}

/// The connection and the senders' session, while they last.
#[derive(Default)]
struct Live {
    connection: Option<ConnectionHandle<()>>,
    session: Option<SessionHandle<()>>,
    attempts: Attempts,
}

/// A link attach in progress, borrowing the session.
pub(crate) type AttachFuture<'s, L, E> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<L, E>> + Send + 's>>;

impl Shared {
    /// Ready to connect to `endpoint` (nothing is opened yet).
    pub fn new(endpoint: Endpoint, options: AmqpOptions) -> Result<Shared, Error> {
        let tls = if endpoint.tls {
            Some(tls_connector(options.ca_file.as_deref())?)
        } else {
            None
        };
        let container_id = options
            .container_id
            .clone()
            .unwrap_or_else(|| format!("helsemelding-{}", uuid::Uuid::new_v4().simple()));
        Ok(Shared {
            endpoint,
            options,
            container_id,
            tls,
            live: Mutex::new(Live::default()),
            closed: AtomicBool::new(false),
            next_link_id: AtomicU64::new(1),
            known_queues: std::sync::Mutex::new(HashSet::new()),
        })
    }

    /// Whether [`Shared::close`] has been called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// A new link id, unique within this transport.
    pub fn next_link_id(&self) -> u64 {
        self.next_link_id.fetch_add(1, Ordering::SeqCst)
    }

    /// Runs `fut` bounded by the operation timeout: the outer error is the
    /// timeout, the inner one the call's own failure as text.
    pub async fn bounded<T, E: std::fmt::Display>(
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
        if self.is_closed() {
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
                    endpoint: self.endpoint.name(),
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
    pub async fn private_session(&self, queue: &str) -> Result<SessionHandle<()>, Error> {
        let mut live = self.live.lock().await;
        let result = self.begin_session(&mut live, queue).await;
        match &result {
            Ok(_) => live.attempts.succeeded(),
            Err(_) => live.attempts.failed(),
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
                endpoint: self.endpoint.name(),
                reason: format!(
                    "no connection within the connect timeout of {} s",
                    limit.as_secs_f64()
                ),
            }),
        }
    }

    async fn connect_unbounded(&self, queue: &str) -> Result<ConnectionHandle<()>, Error> {
        let endpoint = self.endpoint.name();
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
        let endpoint = self.endpoint.name();
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
    pub async fn attach<L, F, E>(&self, queue: &str, attach: F) -> Result<L, Error>
    where
        F: for<'s> FnOnce(&'s mut SessionHandle<()>) -> AttachFuture<'s, L, E>,
        E: std::fmt::Display,
    {
        let mut live = self.live.lock().await;
        let session = match self.ensure_session(&mut live, queue).await {
            Ok(session) => session,
            Err(e) => {
                live.attempts.failed();
                return Err(e);
            }
        };
        match self.bounded("attach", queue, attach(session)).await {
            Ok(Ok(link)) => {
                live.attempts.succeeded();
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
    pub async fn check_queue(&self, queue: &str, address: &str) -> Result<(), Error> {
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

    /// Waits out the backoff the run of failed attempts has reached.
    pub async fn pause_after_failure(&self) {
        let backoff = Backoff {
            min: self.options.backoff_min,
            max: self.options.backoff_max,
        };
        let delay = self
            .live
            .lock()
            .await
            .attempts
            .delay(backoff, fastrand::f64());
        tokio::time::sleep(delay).await;
    }

    /// Forgets the connection after a call that timed out: it may be half dead.
    pub async fn drop_connection(&self) {
        let mut live = self.live.lock().await;
        live.session = None;
        live.connection = None;
    }

    /// Ends the senders' session and closes the connection; later calls
    /// fail with [`Error::Closed`].
    pub async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let mut live = self.live.lock().await;
        if let Some(mut session) = live.session.take() {
            let _ = self.bounded("end session", "-", session.end()).await;
        }
        if let Some(mut connection) = live.connection.take() {
            let _ = self
                .bounded("close connection", "-", connection.close())
                .await;
        }
    }
}

/// An attach refusal: [`Error::NoSuchQueue`] when the broker says the node
/// is not there (AMQP `not-found`), else [`Error::Attach`].
pub(crate) fn attach_error(queue: &str, reason: String) -> Error {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_in_any_spelling_means_no_such_queue() {
        for reason in [
            "amqp:not-found: no queue '91462_async' in vhost '/'",
            "NotFound",
            "Remote error: AmqpError(NotFound)",
        ] {
            assert!(
                matches!(attach_error("q", reason.into()), Error::NoSuchQueue { .. }),
                "{reason}"
            );
        }
        match attach_error("q", "amqp:unauthorized-access".into()) {
            Error::Attach { queue, reason } => {
                assert_eq!(
                    (queue.as_str(), reason.as_str()),
                    ("q", "amqp:unauthorized-access")
                )
            }
            other => panic!("expected Attach, got {other:?}"),
        }
    }
}
