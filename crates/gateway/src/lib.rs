//! The helsemelding gateway: signed and encrypted health messages over
//! Norsk Helsenett's service bus, for a system that should not have to
//! touch AMQP, CMS or the registries itself. The `helsemelding` binary
//! (`src/main.rs`) parses its command line and calls this library; a
//! daemon or an embedder uses the same parts.
//!
//! # Layout
//!
//! * `config`: the configuration, one TOML file whose keys environment
//!   variables `HELSEMELDING_<SECTION>_<KEY>` override, read raw and turned
//!   into a validated [`Config`](config::Config) at start-up with errors
//!   that name the key.
//!
//! * `node`: the one assembly from a validated configuration to a running
//!   [`Node`](node::Node): identities, registry, transport and store, and
//!   the messenger over them. The only place that picks backends; the demo
//!   and the benchmarks bring their own [`Parts`](node::Parts) and have
//!   them assembled the same way.
//!
//! * `supervisor`: what runs around the listener for as long as a gateway
//!   listens (`listen` today, a daemon later): start-up (dead-letter
//!   routes, the outbox resent), the outbox pump, overdue receipts, and the
//!   stop on SIGTERM or SIGINT with a bounded drain.
//!
//! * `sink`: where `listen` puts what it accepts: the out-dir writer
//!   [`ToDirectory`](sink::ToDirectory) (atomic, idempotent on
//!   redelivery), and which failures of the directory are ours (the
//!   listener pauses) rather than the message's.
//!
//! * `queues` (internal): our queues as the registry names them, and what
//!   RabbitMQ's management API says of them (counts, dead-letter paths).
//!
//! * `devpki`: a throw-away certificate authority and parties for the
//!   demo, the benchmarks and local experiments.
//!
//! * `cmd`: the subcommands of `helsemelding`, each an `Args` struct
//!   (clap) and a `run` function that the binary calls.

pub mod cmd;
pub mod config;
pub mod devpki;
pub mod node;
mod queues;
pub mod sink;
pub mod supervisor;
