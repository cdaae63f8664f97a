//! A serial barcode scanner: codes are pushed through the control API.

use std::time::Instant;

use super::line::Model;

/// The scanner sends, it does not listen: whatever the host writes is ignored.
#[derive(Default)]
pub struct Scanner;

impl Model for Scanner {
    fn on_bytes(&mut self, _input: &[u8], _now: Instant) -> Vec<u8> {
        vec![]
    }
}
