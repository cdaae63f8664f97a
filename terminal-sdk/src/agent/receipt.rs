//! What the counter's tickets look like on paper (ESC/POS, GB18030 text
//! through [`Receipt`]).

use proto::device::escpos::{Align, QrLevel, Receipt};

use super::store::{Sale, rfc3339};
use super::tickets::PickOrder;

/// The heading of a ticket printed again.
pub fn reprint_mark(n: i64) -> String {
    format!("补打 / REPRINT {n}")
}

fn header(r: Receipt, reprint_no: i64) -> Receipt {
    if reprint_no > 0 {
        r.align(Align::Center)
            .bold(true)
            .line(&reprint_mark(reprint_no))
            .bold(false)
    } else {
        r
    }
}

/// A sale's receipt. The QR code holds the gateway's order id once the sale
/// is uploaded, the sale's `clientOrderId` before (printed offline).
pub fn sale_receipt(sale: &Sale, store_name: &str, terminal: &str, reprint_no: i64) -> Receipt {
    let mut r = header(Receipt::new(), reprint_no)
        .align(Align::Center)
        .bold(true)
        .size(2, 2)
        .line(store_name)
        .size(1, 1)
        .bold(false)
        .line(&format!("终端 {terminal}"));
    r = match (&sale.order_id, sale.display_no) {
        (Some(id), d) => {
            let r = r.line(&format!("订单号 {id}"));
            match d {
                Some(d) => r
                    .bold(true)
                    .size(2, 2)
                    .line(&format!("取单号 {d}"))
                    .size(1, 1)
                    .bold(false),
                None => r,
            }
        }
        (None, _) => r.bold(true).line("离线 / OFFLINE").bold(false),
    };
    r = r
        .line(&format!("本机单号 {}", sale.local_no))
        .align(Align::Left)
        .line("--------------------------------");
    for l in &sale.lines {
        r = r.line(&l.name).line(&format!(
            "  {} x {} = {}",
            l.quantity, l.unit_price, l.line_total
        ));
    }
    r = r
        .line("--------------------------------")
        .bold(true)
        .line(&format!("合计 {}", sale.total))
        .bold(false);
    r = match sale.tender.as_str() {
        "cash" => r.line(&format!("现金 {}  找零 {}", sale.tendered, sale.change)),
        kind => {
            let name = match kind {
                "wechatpay" => "微信支付",
                "alipay" => "支付宝",
                other => other,
            };
            let r = r.line(&format!("{name} {}", sale.total));
            match &sale.paid_code {
                Some(c) => r.line(&format!("付款码 {c}")),
                None => r,
            }
        }
    };
    let qr = sale.order_id.as_deref().unwrap_or(&sale.client_order_id);
    r.line(&format!("时间 {}", rfc3339(sale.created_at)))
        .align(Align::Center)
        .qr(qr.as_bytes(), 6, QrLevel::M)
        .line("谢谢惠顾")
        .feed(3)
        .cut()
}

fn order_body(mut r: Receipt, o: &PickOrder) -> Receipt {
    r = r
        .align(Align::Left)
        .line(&format!("渠道 {}", o.channel))
        .line(&format!("下单 {}", o.placed_at));
    r = r.line("--------------------------------");
    for l in &o.lines {
        r = r.line(&format!("{} x {}", l.name, l.quantity));
    }
    r = r.line("--------------------------------");
    if let Some(n) = &o.customer_note {
        r = r.line(&format!("备注 {n}"));
    }
    r.align(Align::Center)
        .qr(o.order_id.as_bytes(), 6, QrLevel::M)
        .feed(3)
        .cut()
}

/// A pick ticket: the display number large, the channel, the lines.
pub fn pick_ticket(o: &PickOrder, reprint_no: i64) -> Receipt {
    let mut r = header(Receipt::new(), reprint_no)
        .align(Align::Center)
        .bold(true)
        .size(3, 3);
    r = match o.display_no {
        Some(d) => r.line(&format!("#{d}")),
        None => r.line(&o.order_id),
    };
    r = r
        .size(1, 1)
        .bold(false)
        .line(&format!("订单号 {}", o.order_id));
    order_body(r, o)
}

/// A cancellation notice: "已取消 / CANCELLED" large, then the order.
pub fn cancelled_ticket(o: &PickOrder, reprint_no: i64) -> Receipt {
    let mut r = header(Receipt::new(), reprint_no)
        .align(Align::Center)
        .bold(true)
        .size(2, 2)
        .line("已取消 / CANCELLED");
    if let Some(d) = o.display_no {
        r = r.line(&format!("#{d}"));
    }
    r = r
        .size(1, 1)
        .bold(false)
        .line(&format!("订单号 {}", o.order_id));
    order_body(r, o)
}
