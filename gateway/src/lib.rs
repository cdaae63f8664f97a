//! The smart-terminal order gateway: orders from every channel in one
//! queue per store, over SQLite or PostgreSQL.

pub mod actor;
pub mod app;
pub mod catalog;
pub mod channels;
pub mod check;
pub mod clock;
pub mod config;
pub mod db;
pub mod demo;
pub mod error;
pub mod events;
pub mod http;
pub mod job_registry;
pub mod jobs;
pub mod keys;
pub mod meter;
pub mod metrics;
pub mod orders;
pub mod outbound;
pub mod outbox;
pub mod payments;
pub mod platforms;
pub mod retention;
pub mod soap;
pub mod supervise;
pub mod telemetry;
pub mod terminals;
