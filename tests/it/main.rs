//! envctl's integration tests: one binary. Modules without Docker run everywhere; the
//! lifecycle modules need a Docker engine (`.ci/run` starts one).

mod cli;
mod connect;
mod engine;
mod faults;
mod fuzz;
mod harness;
mod lifecycle;
mod pipeline;
mod private_engine;
mod reach;
mod reaper;
mod registry;
mod slow_proxy;
mod spec;
mod support;
mod workflow;
