"""Drives the gateway's SOAP payment operations with zeep, an independent SOAP stack.

Loads the WSDL from a running gateway with payments on, sells two lattes
over SubmitOrder, then: GetPayment on the unpaid order, PayOrder with a
payment code the provider simulator is told to accept, GetPayment again,
a partial and a repeated RefundOrder, an over-refund Fault, a refund of
one order line with a reason and restocking once the order is completed,
another store's terminal refused, and a refund the provider accepted but
has not finished (state processing), then cash: TenderCash with change,
the same tender again, a second one and a short one refused. Every answer is compared with the REST payments
document and the simulator's ledger, and every message body the server
sent is validated against the WSDL's inline XSD (lxml).

Environment: GATEWAY_URL, SIMULATOR_URL (the hw-sim payments control API),
TERMINAL_ID, TERMINAL_KEY, OTHER_TERMINAL_ID, OTHER_TERMINAL_KEY (a
terminal of another store), PAYMENT_CODE (an 18-digit WeChat code). The
gateway needs store S001 with product LATTE (piece, 10.58) in stock.
Run by tests/tests/soap_payments.rs; exits non-zero on the first failed check.
"""

import os
from decimal import Decimal

from lxml import etree

from zeep_common import BASE, check, done, fault_code, history, http, make_client, validate_last

SIM = os.environ["SIMULATOR_URL"].rstrip("/")
TID = os.environ["TERMINAL_ID"]
KEY = os.environ["TERMINAL_KEY"]
OTHER_TID = os.environ["OTHER_TERMINAL_ID"]
OTHER_KEY = os.environ["OTHER_TERMINAL_KEY"]
CODE = os.environ["PAYMENT_CODE"]


def ledger():
    status, body = http("GET", SIM + "/ledger")
    check(status == 200, "the simulator's ledger")
    return body["charges"]


def same_as_rest(z, r):
    """A GetPayment answer and the REST payments document say the same."""
    check(z.orderId == r["order_id"], "order id")
    check(z.paymentStatus == r["payment_status"], f"payment status {z.paymentStatus} vs {r['payment_status']}")
    check(len(z.charge) == len(r["charges"]), "charge count")
    for zc, rc in zip(z.charge, r["charges"]):
        check(zc.id == rc["id"] and zc.state == rc["state"], "charge id and state")
        check(zc.amount == Decimal(rc["amount"]) and zc.refunded == Decimal(rc["refunded"]), "charge amounts")
        check(zc.authCode == rc["auth_code"], "masked code")
        check([x.call for x in zc.exchange] == [x["call"] for x in rc["exchanges"]], "provider exchanges")
    check(len(z.refund) == len(r["refunds"]), "refund count")
    for zr, rr in zip(z.refund, r["refunds"]):
        check(zr.id == rr["id"] and zr.requestId == rr["request_id"], "refund id")
        check(zr.state == rr["state"] and zr.amount == Decimal(rr["amount"]), "refund state and amount")
        check(zr.reason == rr.get("reason") and bool(zr.restock) == rr["restock"], "refund reason and restock")
        rl = rr.get("lines", [])
        check([(l.lineNo, l.sku, l.quantity, l.amount) for l in zr.line]
              == [(l["line_no"], l["sku"], Decimal(l["quantity"]), Decimal(l["amount"])) for l in rl],
              "refund lines")
    check(z.prepaid is None and r.get("prepaid") is None, "not prepaid in the app")


# PayOrder blocks until the charge is final: a long operation timeout.
svc = make_client(TID, KEY, timeout=120).service

# --- an unpaid order ----------------------------------------------------------
sale = svc.SubmitOrder(clientOrderId="zeep-pay-1", line=[{"sku": "LATTE", "quantity": Decimal("2")}])
validate_last()
oid = sale.order.id
check(sale.order.total == Decimal("21.16"), f"total {sale.order.total}")
unpaid = svc.GetPayment(orderId=oid)
validate_last()
check(unpaid.paymentStatus == "unpaid" and len(unpaid.charge) == 0 and len(unpaid.refund) == 0, "nothing paid yet")
same_as_rest(unpaid, http("GET", f"{BASE}/api/v1/orders/{oid}/payments", KEY)[1])

# --- PayOrder: the provider accepts the code -----------------------------------
status, _ = http("PUT", SIM + "/scenario", body={"auth_code": CODE, "outcome": "success"})
check(status == 200, "scenario set")
charge = svc.PayOrder(orderId=oid, authCode=CODE)
validate_last()
check(charge.state == "succeeded", f"charge state {charge.state}")
check(charge.amount == Decimal("21.16") and charge.refunded == Decimal("0"), "charged the order's total")
check(CODE not in etree.tostring(history.last_received["envelope"]).decode(), "the code is never echoed")
check(charge.authCode == CODE[:2] + "******" + CODE[-4:], f"masked code {charge.authCode}")
paid = svc.GetPayment(orderId=oid)
validate_last()
check(paid.paymentStatus == "paid" and [c.id for c in paid.charge] == [charge.id], "paid by that charge")
same_as_rest(paid, http("GET", f"{BASE}/api/v1/orders/{oid}/payments", KEY)[1])
entry = [e for e in ledger() if e["out_trade_no"] == charge.id]
check(len(entry) == 1 and entry[0]["state"] == "SUCCESS" and entry[0]["total_fee"] == 2116, "the provider took 21.16 once")

# --- RefundOrder: partial, repeated, too much ---------------------------------
r1 = svc.RefundOrder(orderId=oid, requestId="zeep-r1", amount=Decimal("5.00"))
validate_last()
check(r1.state == "succeeded" and r1.amount == Decimal("5.00") and r1.chargeId == charge.id, "refunded 5.00")
again = svc.RefundOrder(orderId=oid, requestId="zeep-r1", amount=Decimal("5.00"))
validate_last()
check(again.id == r1.id, "the same request id is the same refund")
check(fault_code(svc.RefundOrder, orderId=oid, requestId="zeep-r2", amount=Decimal("16.17"))
      == ("soap:Client", "refund_exceeds_paid"), "over-refund refused")
after = svc.GetPayment(orderId=oid)
validate_last()
check(after.paymentStatus == "partially_refunded" and len(after.refund) == 1, "one refund of 5.00")
same_as_rest(after, http("GET", f"{BASE}/api/v1/orders/{oid}/payments", KEY)[1])
entry = [e for e in ledger() if e["out_trade_no"] == charge.id][0]
check(entry["refunded_fee"] == 500, f"the provider refunded 5.00 once ({entry['refunded_fee']})")

# --- RefundOrder by line, restocking a completed order -------------------------
for action in ["accept", "ready", "complete"]:
    svc.UpdateOrderStatus(orderId=oid, action=action)
    validate_last()


def lattes_on_hand():
    cat = svc.GetCatalog()
    validate_last()
    return [i.onHand for i in cat.item if i.sku == "LATTE"][0]


shelf = lattes_on_hand()
r3 = svc.RefundOrder(orderId=oid, requestId="zeep-r3", line=[{"lineNo": 1, "quantity": Decimal("1")}],
                     reason="spilt", restock=True)
validate_last()
check(r3.state == "succeeded" and r3.amount == Decimal("10.58"), f"one latte's share refunded ({r3.amount})")
check(r3.restock is True and r3.reason == "spilt", "restock and reason echoed")
check([(l.lineNo, l.sku, l.quantity, l.amount) for l in r3.line] == [(1, "LATTE", Decimal("1"), Decimal("10.58"))],
      "the refunded line")
check(lattes_on_hand() == shelf + 1, f"the latte is back on the shelf ({shelf} before)")
check(fault_code(svc.RefundOrder, orderId=oid, requestId="zeep-r4", line=[{"lineNo": 1, "quantity": Decimal("2")}])
      == ("soap:Client", "refund_exceeds_line"), "more of the line than is left")
by_line = svc.GetPayment(orderId=oid)
validate_last()
check(len(by_line.refund) == 2 and by_line.refund[1].line[0].sku == "LATTE", "GetPayment shows the lines")
same_as_rest(by_line, http("GET", f"{BASE}/api/v1/orders/{oid}/payments", KEY)[1])
entry = [e for e in ledger() if e["out_trade_no"] == charge.id][0]
check(entry["refunded_fee"] == 1558, f"the provider refunded 15.58 in all ({entry['refunded_fee']})")

# --- Faults carry the REST codes -------------------------------------------------
check(fault_code(svc.PayOrder, orderId=oid, authCode="6901234567892")
      == ("soap:Client", "invalid_payment_code"), "not a payment code")
check(fault_code(svc.GetPayment, orderId="no-such-order") == ("soap:Client", "order_not_found"), "order_not_found")
other = make_client(OTHER_TID, OTHER_KEY).service
check(fault_code(other.GetPayment, orderId=oid) == ("soap:Client", "order_not_found"), "another store's order looks missing")
check(fault_code(other.RefundOrder, orderId=oid, requestId="x", amount=Decimal("1.00"))
      == ("soap:Client", "order_not_found"), "another store cannot refund")
check(len(ledger()) == 1, "one charge at the provider in all")

# --- A refund the provider accepted but has not finished: processing -----------
status, _ = http("PUT", SIM + "/scenario",
                 body={"auth_code": CODE, "outcome": "success", "refund": "processing_forever"})
check(status == 200, "scenario set")
slow = svc.SubmitOrder(clientOrderId="zeep-pay-2", line=[{"sku": "LATTE", "quantity": Decimal("1")}])
validate_last()
slow_id = slow.order.id
slow_charge = svc.PayOrder(orderId=slow_id, authCode=CODE)
validate_last()
check(slow_charge.state == "succeeded", f"second charge {slow_charge.state}")
r5 = svc.RefundOrder(orderId=slow_id, requestId="zeep-r5", amount=Decimal("1.00"))
validate_last()
check(r5.state == "processing", f"accepted, not refunded yet ({r5.state})")
pending = svc.GetPayment(orderId=slow_id)
validate_last()
check(pending.paymentStatus == "paid" and pending.refund[0].state == "processing", "still paid while it runs")
same_as_rest(pending, http("GET", f"{BASE}/api/v1/orders/{slow_id}/payments", KEY)[1])

# --- TenderCash: cash at the counter, no provider involved -----------------------
cash_sale = svc.SubmitOrder(clientOrderId="zeep-cash-1", line=[{"sku": "LATTE", "quantity": Decimal("1")}])
validate_last()
cash_id = cash_sale.order.id
t = svc.TenderCash(orderId=cash_id, tendered=Decimal("20.00"))
validate_last()
check(t.orderId == cash_id and t.amount == Decimal("10.58") and t.tendered == Decimal("20.00")
      and t.change == Decimal("9.42"), f"cash tender {t}")
check(t.by == "terminal:" + TID, f"taken by {t.by}")
again = svc.TenderCash(orderId=cash_id, tendered=Decimal("20.00"))
validate_last()
check(again.at == t.at and again.change == t.change, "the same tender again is the recorded one")
check(fault_code(svc.TenderCash, orderId=cash_id, tendered=Decimal("50.00"))
      == ("soap:Client", "order_already_paid"), "a second, different tender refused")
rest = http("GET", f"{BASE}/api/v1/orders/{cash_id}/payments", KEY)[1]
check(rest["payment_status"] == "paid" and rest["cash"]["change"] == "9.42"
      and rest["cash"]["tendered"] == "20.00", f"REST shows the tender: {rest}")
short = svc.SubmitOrder(clientOrderId="zeep-cash-2", line=[{"sku": "LATTE", "quantity": Decimal("1")}])
validate_last()
check(fault_code(svc.TenderCash, orderId=short.order.id, tendered=Decimal("10.57"))
      == ("soap:Client", "tender_too_small"), "less than the total refused")
check(fault_code(other.TenderCash, orderId=short.order.id, tendered=Decimal("20.00"))
      == ("soap:Client", "order_not_found"), "another store's terminal cannot take it")

done("payments")
