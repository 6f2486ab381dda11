//! What the tests of every crate share: a test PKI made at test time, paths
//! to the real third-party samples in `../shared/fixtures`, and (from the
//! transport issue on) the private RabbitMQ harness and independent peers,
//! among them a stand-in for the released .NET listener ([`dotnet`]).
//!
//! This crate is a dev-dependency only; no production code may use it.

pub mod broker;
pub mod dotnet;
pub mod fixtures;
pub mod http;
pub mod peers;
pub mod pki;
