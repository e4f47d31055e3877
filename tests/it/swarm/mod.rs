//! Tests on a real multi-node Docker swarm: three engines on this machine, each in a network
//! namespace of its own, built by `tests/swarm/swarm.sh` (see [`cluster`]).

mod backend;
mod cli;
pub mod cluster;
mod contract;
mod smoke;
