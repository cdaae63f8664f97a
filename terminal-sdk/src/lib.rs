//! The store terminal side: gateway client and peripheral drivers.
pub use proto;

pub mod agent;
pub mod client;

pub mod device;
