//! The NHN messaging profile as pure data and functions: no I/O, no async.
//!
//! Everything that can be decided from bytes is decided here (see
//! `../shared/PROFILE.md`, the contract):
//!
//! - [`herid`]: HER-ids, read from strings, ints and longs;
//! - [`queue`]: queue names, registry addresses, AMQP address templates, TTLs;
//! - [`envelope`]: the AMQP properties and application properties, built as
//!   the reference library sends them and read leniently;
//! - [`error_report`]: error conditions and the error report message;
//! - [`events`]: the reference library's event codes;
//! - [`msghead`], [`apprec`], [`dialog`]: the XML documents the flows need;
//! - [`metadata`]: payload metadata copied into application properties.

pub mod envelope;
mod error;
pub mod error_report;
pub mod events;
pub mod herid;
pub mod queue;
mod time;

pub use error::{Error, Result};
pub use herid::HerId;
pub use time::{format_utc_seconds, parse_lenient as parse_timestamp};
mod xml;
pub use xml::{Code, Limits};
pub mod apprec;
pub mod dialog;
pub mod metadata;
pub mod msghead;
