//! Printer (ESC/POS), scale, scanner and display bytes: every decode step
//! consumes at least one byte and never more than is there.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::device::{Decode, display, escpos, scale, scanner};

fn drain<T>(mut buf: &[u8], decode: impl Fn(&[u8]) -> Decode<T>) {
    while let Decode::Done(_, n) | Decode::Invalid { skip: n, .. } = decode(buf) {
        assert!(n > 0 && n <= buf.len());
        buf = &buf[n..];
    }
}

fuzz_target!(|data: &[u8]| {
    drain(data, escpos::decode);
    drain(data, escpos::decode_reply);
    drain(data, scale::decode_reply);
    drain(data, scale::decode_command);
    drain(data, scanner::decode);
    drain(data, display::decode);
    let _ = escpos::decode_gb18030(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = scanner::classify(s);
        let _ = proto::device::parse_milli(s);
    }
});
