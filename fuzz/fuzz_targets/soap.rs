//! SOAP request envelopes (what the terminal endpoint reads) and every
//! response type (what the terminal SDK reads).
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::soap::*;

fuzz_target!(|data: &[u8]| {
    let _ = parse_request(data).map(|e| e.request());
    let _ = parse_response::<SubmitOrderResponse>(data);
    let _ = parse_response::<GetOrderResponse>(data);
    let _ = parse_response::<ListOrdersResponse>(data);
    let _ = parse_response::<GetCatalogResponse>(data);
    let _ = parse_response::<HeartbeatResponse>(data);
    let _ = parse_response::<PayOrderResponse>(data);
    let _ = parse_response::<GetPaymentResponse>(data);
    let _ = parse_response::<RefundOrderResponse>(data);
});
