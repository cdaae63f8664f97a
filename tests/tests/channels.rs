//! Third-party delivery orders end to end: the real gateway with its
//! channels, the in-process Meituan-style platform simulator, on SQLite and
//! PostgreSQL. Pushes in (signed, de-duplicated, mapped, held), the store's
//! actions and stock out (outbox, in order, through outages and restarts),
//! the generic HMAC webhook, and the unconfirmed-order alert. Short backoffs
//! and polls; "within a second" is checked, nothing else is timed.

#[path = "channels/app.rs"]
mod app;
#[path = "channels/counter.rs"]
mod counter;
#[path = "channels/fidelity.rs"]
mod fidelity;
#[path = "channels/inbound.rs"]
mod inbound;
#[path = "channels/outbound.rs"]
mod outbound;
#[path = "channels/restart.rs"]
mod restart;
#[path = "channels/webhook.rs"]
mod webhook;
