//! The helsemelding gateway: signed and encrypted health messages over
//! Norsk Helsenett's service bus, for a system that should not have to
//! touch AMQP, CMS or the registries itself. The `helsemelding` binary
//! (`src/main.rs`) parses its command line and calls this library; a
//! daemon or an embedder uses the same parts:
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use helsemelding_gateway::{assembly, Config};
//!
//! let config = Config::load("gateway.toml".as_ref())?;
//! let messenger = assembly::open(&config).await?;
//! let flushed = messenger.flush_outbox().await?;
//! println!("{} sent from the outbox", flushed.sent);
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! * `config`: the configuration, one TOML file whose keys environment
//!   variables `HELSEMELDING_<SECTION>_<KEY>` override, read raw and turned
//!   into a validated [`Config`] at start-up with errors that name the key;
//!   nothing later re-checks it.
//!
//! * `assembly`: the one assembly, from a validated configuration to a
//!   running [`Messenger`](helsemelding_messaging::Messenger) over the
//!   identities, registry, transport and store it names
//!   ([`assembly::open`]). The only place that picks backends; every
//!   command, the supervisor, the demo and the benchmarks get their
//!   messenger here (the demo and the benchmarks bring their own
//!   [`Parts`](assembly::Parts)).
//!
//! * `supervisor`: what runs around the listener for as long as a gateway
//!   listens (`listen` today, a daemon later): start-up (dead-letter
//!   routes checked, the outbox resent), the outbox pump, overdue receipts,
//!   and the stop on SIGTERM or SIGINT with a bounded drain.
//!
//! * `sink`: where `listen` puts what it accepts: the out-dir writer
//!   [`ToDirectory`](sink::ToDirectory) (atomic writes, a redelivery not
//!   written twice), and which failures of the directory are ours (the
//!   listener pauses) rather than the message's.
//!
//! * `queues` (internal): our queues as the registry names them, and what
//!   RabbitMQ's management API says of them (counts, dead-letter paths).
//!
//! * `folder`: `serve`'s folder drop: the settle rule, what an OUT file
//!   must be, atomic writes and moves, the drop-box loop, the IN
//!   folder's acknowledgements, and the EHR's own AppRecs (`replies`,
//!   from the APPREC folder or the API).
//!
//! * `http`: `serve`'s local HTTP API over the same messenger and records
//!   (bearer tokens, problem+json, the OpenAPI document), and `records`:
//!   how a message record looks as JSON there and in `messages --json`.
//!
//! * `devpki`: a throw-away certificate authority and its parties, for
//!   the demo, the benchmarks and local experiments.
//!
//! * `cmd`: the subcommands of `helsemelding`, each an `Args` struct
//!   (clap) and a `run` function that the binary calls.

#![deny(missing_docs)]

pub mod assembly;
pub mod cmd;
pub mod config;
pub mod devpki;
pub mod folder;
pub mod http;
mod queues;
pub mod records;
pub mod sink;
pub mod supervisor;

pub use config::Config;
