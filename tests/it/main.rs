//! envctl's integration tests: one binary. Modules without Docker run everywhere; the
//! lifecycle modules need a Docker engine (`.ci/run` starts one).

mod bounds;
mod browser;
mod capacity;
mod cli;
mod completion;
mod compose_keys;
mod connect;
mod contract;
mod docs;
mod engine;
mod faults;
mod fuzz;
mod gateway;
mod harness;
mod lifecycle;
mod logs;
mod pipeline;
mod pool;
mod ports;
mod private_engine;
mod reach;
mod reaper;
mod registry;
mod run_failure;
mod slow_proxy;
mod snapshot;
mod spec;
mod support;
mod swarm;
mod terminal;
mod workflow;
