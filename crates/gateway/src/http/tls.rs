//! HTTPS for an API reached from other machines (`[http] tls_cert`,
//! `tls_key`, `allow_remote`): TLS 1.2 and 1.3 by rustls. Handshakes run
//! beside the accept loop, each bounded by [`HANDSHAKE`], so a client
//! that opens a connection and says nothing holds up nobody; a failed
//! handshake is logged (never its bytes) and the next connection taken.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _, Result};
use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to finish its TLS handshake.
pub const HANDSHAKE: Duration = Duration::from_secs(10);

/// Handshakes finished and not yet taken by the server.
const READY: usize = 64;

/// The server side of TLS with our certificate chain and key.
#[derive(Clone)]
pub struct Acceptor(TlsAcceptor);

impl Acceptor {
    /// Reads the PEM chain at `cert` (ours first) and the key at `key`.
    pub fn from_pem(cert: &Path, key: &Path) -> Result<Acceptor> {
        let chain = rustls_pemfile::certs(&mut std::io::BufReader::new(
            std::fs::File::open(cert)
                .with_context(|| format!("http.tls_cert {}", cert.display()))?,
        ))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("http.tls_cert {}: not PEM certificates", cert.display()))?;
        if chain.is_empty() {
            return Err(anyhow!(
                "http.tls_cert {}: holds no certificate",
                cert.display()
            ));
        }
        let private = rustls_pemfile::private_key(&mut std::io::BufReader::new(
            std::fs::File::open(key).with_context(|| format!("http.tls_key {}", key.display()))?,
        ))
        .with_context(|| format!("http.tls_key {}: not a PEM key", key.display()))?
        .ok_or_else(|| anyhow!("http.tls_key {}: holds no private key", key.display()))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .with_context(|| {
                format!(
                    "http.tls_cert {} and http.tls_key {} do not make a usable pair",
                    cert.display(),
                    key.display()
                )
            })?;
        Ok(Acceptor(TlsAcceptor::from(Arc::new(config))))
    }
}

/// A TCP listener whose connections are TLS, for `axum::serve`.
pub struct Listener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl Listener {
    /// Accepts on `tcp` and hands on the connections whose handshake
    /// finished; call it in a Tokio runtime.
    pub fn new(tcp: TcpListener, acceptor: Acceptor) -> Listener {
        let local = tcp
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let (sender, ready) = mpsc::channel(READY);
        tokio::spawn(accept_loop(tcp, acceptor, sender));
        Listener { local, ready }
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: Acceptor,
    sender: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (stream, peer) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors and the like: said, then a pause.
                tracing::warn!(%error, "API: accepting a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if sender.is_closed() {
            return;
        }
        let (acceptor, sender) = (acceptor.0.clone(), sender.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = sender.send((tls, peer)).await;
                }
                Ok(Err(error)) => tracing::info!(%peer, %error, "API: TLS handshake failed"),
                Err(_) => tracing::info!(%peer, "API: TLS handshake not finished in time"),
            }
        });
    }
}

impl axum::serve::Listener for Listener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept loop ended only with the runtime: wait for the stop.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// The peer of a request, over TCP or TLS alike (the middleware's
/// `ConnectInfo`).
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Peer {
        Peer(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, Listener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, Listener>) -> Peer {
        Peer(*stream.remote_addr())
    }
}
