//! Simulators of devices and outside parties, for office testing.
//!
//! Each simulator is a module with a `clap` argument struct and a `run`; the
//! `hw-sim` binary has one subcommand per module.

pub mod devices;
pub mod link;
pub mod office;
pub mod osfaults;
pub mod payments;
pub mod platform;
pub mod tls;
