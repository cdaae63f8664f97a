//! Simulators of devices and outside parties.
