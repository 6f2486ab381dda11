//! What the tests of every crate share: one PKI builder ([`pki`]), one
//! party set-up ([`party`]: certificates issued and registered in the file
//! registry, and a messenger or a gateway configuration around them), the
//! MsgHead the suites send ([`payload`]), paths
//! to the real third-party samples in `../shared/fixtures` ([`fixtures`]),
//! the private RabbitMQ harness ([`broker`]), a small HTTP server ([`http`])
//! and independent peers ([`peers`], and a stand-in for the released .NET
//! listener in [`dotnet`]).
//!
//! This crate is a dev-dependency only; no production code may use it
//! (`tests/architecture.rs` checks that).
#![deny(missing_docs)]

pub mod broker;
pub mod dotnet;
pub mod fixtures;
pub mod http;
pub mod party;
pub mod payload;
pub mod peers;
pub mod pki;

/// Runs `work` (a store call, say) to its end from a synchronous test.
pub fn block_on<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
        .block_on(work)
}
