//! What the Docker and the Swarm backends share of talking to an engine through bollard: its
//! output as lines.
//!
//! Each backend converts bollard's values to the seam's in one hop, with these helpers; nothing
//! here knows containers from services.

pub mod logs;
