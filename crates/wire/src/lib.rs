//! The NHN messaging profile as pure data and functions: no I/O, no async.
//!
//! Everything that can be decided from bytes is decided here (see
//! `../shared/PROFILE.md`, the contract):
//!
//! - [`herid`]: HER-ids, read from strings, ints and longs;
//! - [`queue`]: queue names, registry addresses, broker dialects and AMQP
//!   address templates, TTLs and the profile's time limits;
//! - [`envelope`]: the AMQP properties and application properties, built as
//!   the reference library sends them and read leniently and checked;
//! - [`error_report`]: error conditions and the error report message;
//! - [`events`]: the reference library's event codes;
//! - [`msghead`], [`apprec`], [`dialog`]: the XML documents the flows need,
//!   read through a hardened parser ([`Limits`]: no DOCTYPE, size, depth and
//!   node caps) as read-only views;
//! - [`metadata`]: payload metadata copied into application properties;
//! - [`text`]: text from peers made safe to print and log (escaped, bounded).
//!
//! Every refusal is an [`Error`]; [`Error::condition`] says which error
//! condition the sender of a refused message is told.

#![deny(missing_docs)]

pub mod apprec;
mod condition;
pub mod dialog;
pub mod envelope;
mod error;
pub mod error_report;
pub mod events;
pub mod herid;
pub mod metadata;
pub mod msghead;
pub mod queue;
pub mod text;
mod time;
mod xml;

pub use error::{Error, Result};
pub use herid::HerId;
pub use time::{format_utc_seconds, parse_lenient as parse_timestamp};
pub use xml::{Code, Limits};
