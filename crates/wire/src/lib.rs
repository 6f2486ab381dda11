//! The NHN messaging profile as pure data and functions: no I/O, no async.
//!
//! Everything that can be decided from bytes is decided here (see
//! `../shared/PROFILE.md`).
