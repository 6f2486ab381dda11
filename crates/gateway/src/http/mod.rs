//! `serve`'s local HTTP API: what an EHR that would rather speak HTTP than
//! write files uses, over the same messenger, store records and IN folder
//! as the folder drop (a message submitted here and one dropped in OUT are
//! the same kind of record, with the same states and events).
//!
//! It listens on loopback (`[http] listen`, 127.0.0.1:8095) unless TLS and
//! `allow_remote` are configured; every request needs a bearer token
//! ([`auth`]); errors are `application/problem+json` ([`problem`]); the
//! routes are described by the OpenAPI document at
//! `/api/v1/openapi.json` ([`openapi`], checked against [`router`] in a
//! test).
//!
//! # Layout
//! - [`auth`]: the token file, the middleware and its audit rows;
//! - [`problem`]: the error body and the status of each refusal;
//! - [`messages`]: submit, list, show, retry and cancel what we send;
//! - [`inbox`]: lease, read, acknowledge, release and answer what came;
//! - [`feed`]: the events feed, the communication test and the probes;
//! - [`openapi`]: the document;
//! - [`tls`]: the HTTPS listener for an API reached from other machines.

pub mod auth;
pub mod feed;
pub mod inbox;
pub mod messages;
pub mod openapi;
pub mod problem;
pub mod tls;

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use helsemelding_messaging::{Messenger, ReceiveHealth};
use helsemelding_wire::HerId;

use crate::folder::PartyFolders;
pub use auth::Tokens;

/// What every handler shares: the messenger, the folders and the tokens.
#[derive(Clone)]
pub struct Api {
    inner: Arc<Inner>,
}

struct Inner {
    messenger: Messenger,
    tokens: Tokens,
    folder_root: PathBuf,
    max_bytes: usize,
    receiving: Option<ReceiveHealth>,
    refusals: auth::Refusals,
}

impl Api {
    /// The API over `messenger`, whose incoming messages are in the IN
    /// folders under `folder_root`; bodies above `max_bytes` are refused.
    pub fn new(
        messenger: Messenger,
        tokens: Tokens,
        folder_root: PathBuf,
        max_bytes: usize,
        receiving: Option<ReceiveHealth>,
    ) -> Api {
        Api {
            inner: Arc::new(Inner {
                messenger,
                tokens,
                folder_root,
                max_bytes,
                receiving,
                refusals: auth::Refusals::default(),
            }),
        }
    }

    /// The messenger the API works through.
    pub fn messenger(&self) -> &Messenger {
        &self.inner.messenger
    }

    fn refusals(&self) -> &auth::Refusals {
        &self.inner.refusals
    }

    fn tokens(&self) -> &Tokens {
        &self.inner.tokens
    }

    fn her_ids(&self) -> &[HerId] {
        self.inner.messenger.her_ids()
    }

    fn folders(&self, ours: HerId) -> PartyFolders {
        PartyFolders::new(&self.inner.folder_root, ours)
    }

    fn max_bytes(&self) -> usize {
        self.inner.max_bytes
    }

    fn receiving(&self) -> Option<&ReceiveHealth> {
        self.inner.receiving.as_ref()
    }
}

/// Every route of the API, behind the token check.
pub fn router(api: Api) -> Router {
    // A MsgHead up to the size limit, as XML or base64 in JSON; a body
    // above it is refused before it is read (413), never buffered whole.
    let message_body = DefaultBodyLimit::max(body_limit(api.max_bytes()));
    let routes = Router::new()
        .route(
            "/api/v1/messages",
            post(messages::submit)
                .get(messages::list)
                .layer(message_body),
        )
        .route(
            "/api/v1/messages/{id}",
            get(messages::show).delete(messages::cancel),
        )
        .route("/api/v1/messages/{id}/retry", post(messages::retry))
        .route("/api/v1/inbox/lease", post(inbox::lease))
        .route("/api/v1/inbox/{id}", get(inbox::read))
        .route("/api/v1/inbox/{id}/ack", post(inbox::ack))
        .route("/api/v1/inbox/{id}/release", post(inbox::release))
        .route(
            "/api/v1/inbox/{id}/apprec",
            post(inbox::apprec).layer(message_body),
        )
        .route("/api/v1/events", get(feed::events))
        .route("/api/v1/commtest", post(feed::commtest))
        .route("/api/v1/openapi.json", get(openapi::serve))
        .route("/healthz", get(feed::healthz))
        .route("/readyz", get(feed::readyz))
        .fallback(feed::no_route);
    routes
        .layer(axum::middleware::from_fn_with_state(
            api.clone(),
            auth::authenticate,
        ))
        .with_state(api)
}

/// The largest body read for a message of at most `max_bytes`: base64
/// in JSON is a third larger, and a little room for the JSON around it.
fn body_limit(max_bytes: usize) -> usize {
    max_bytes
        .saturating_add(max_bytes / 3)
        .saturating_add(64 * 1024)
}

/// Serves `router` on `listener` until `stopping` completes; requests in
/// hand are finished first (axum's graceful shutdown).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<tls::Acceptor>,
    stopping: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router.into_make_service_with_connect_info::<tls::Peer>();
    match tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(stopping)
                .await
        }
        Some(acceptor) => {
            axum::serve(tls::Listener::new(listener, acceptor), app)
                .with_graceful_shutdown(stopping)
                .await
        }
    }
}
