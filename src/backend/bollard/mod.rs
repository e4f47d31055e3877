//! What the Docker and the Swarm backends share of talking to an engine through bollard: which
//! engine and how (`--host`, contexts, TLS, ssh) in [`connect`], what its errors say in
//! [`error`], its output as lines in [`logs`], registry credentials in [`auth`], label filters
//! in [`filters`].
//!
//! Each backend converts bollard's values to the seam's in one hop, with these helpers; nothing
//! here knows containers from services.

use std::time::Duration;

pub mod auth;
pub mod connect;
pub mod error;
pub mod filters;
pub mod logs;

/// For requests whose answer may rightly take long: waiting for an exit, following logs,
/// building (the classic builder answers only after it has read the whole context).
pub const PATIENT_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
