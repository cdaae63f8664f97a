"""Drives the gateway's SOAP interface with zeep, an independent SOAP stack.

Loads the WSDL from a running gateway, calls every operation with a
WS-Security UsernameToken, and checks the answers against what the REST API
reports for the same orders. Also checks that the WSDL is well-formed XML and
that its inline XSD accepts every message body the server sent (lxml).

Environment: GATEWAY_URL, TERMINAL_ID, TERMINAL_KEY, OTHER_TERMINAL_ID,
OTHER_TERMINAL_KEY (a terminal of another store), ADMIN_KEY, APP_KEY.
The gateway needs store S001 with products COLA (piece) and DUCK (kg) in stock.
Run by tests/tests/soap.rs; exits non-zero on the first failed check.
"""

import os
from datetime import datetime
from decimal import Decimal

from lxml import etree
from zeep_common import SOAP, BASE, check, done, fault_code, history, http, make_client, schema, validate_last

TID = os.environ["TERMINAL_ID"]
KEY = os.environ["TERMINAL_KEY"]
OTHER_TID = os.environ["OTHER_TERMINAL_ID"]
OTHER_KEY = os.environ["OTHER_TERMINAL_KEY"]
ADMIN = os.environ["ADMIN_KEY"]
APP = os.environ["APP_KEY"]


def rest(method, path, key, body=None):
    return http(method, BASE + path, key, body)


client = make_client(TID, KEY)
svc = client.service


def same_order(z, r):
    """A zeep order object and a REST order document say the same."""
    check(z.id == r["id"], "id")
    check(z.storeId == r["store_id"], "store")
    check(z.channel == r["channel"], "channel")
    check(z.channelOrderId == r["channel_order_id"], "channel order id")
    check(z.displayNo == r["display_no"], "display number")
    check(str(z.businessDay) == r["business_day"], "business day")
    check(z.status == r["status"], f"status {z.status} vs {r['status']}")
    check(z.paymentStatus == r["payment_status"], "payment status")
    check(z.total == Decimal(r["total"]), "total")
    check(z.currency == r["currency"], "currency")
    check(z.note == r["note"], "note")
    check(z.seq == r["seq"], "seq")
    check(z.createdAt == datetime.fromisoformat(r["created_at"]), "created at")
    check(z.updatedAt == datetime.fromisoformat(r["updated_at"]), "updated at")
    check(len(z.line) == len(r["lines"]), "line count")
    for zl, rl in zip(z.line, r["lines"]):
        check(zl.sku == rl["sku"] and zl.unit == rl["unit"], "line sku/unit")
        check(zl.quantity == Decimal(rl["quantity"]), "line quantity")
        check(zl.unitPrice == Decimal(rl["unit_price"]), "unit price")
        check(zl.lineTotal == Decimal(rl["line_total"]), "line total")
    check([c.to for c in z.change] == [h["to"] for h in r["history"]], "history")


# --- SubmitOrder, and its idempotent retry ---------------------------------
lines = [
    {"sku": "COLA", "quantity": Decimal("2")},
    {"sku": "DUCK", "quantity": Decimal("0.355")},
]
sub = svc.SubmitOrder(clientOrderId="zeep-1", line=lines, note="via zeep")
validate_last()
check(sub.replayed is False, "a new order")
check(sub.order.total == Decimal("21.16"), f"total {sub.order.total}")
again = svc.SubmitOrder(clientOrderId="zeep-1", line=lines, note="via zeep")
validate_last()
check(again.replayed is True and again.order.id == sub.order.id, "retry returns the first order")
oid = sub.order.id
status, r = rest("GET", f"/api/v1/orders/{oid}", KEY)
check(status == 200, "REST finds the order")
same_order(sub.order, r)

# --- GetOrder -----------------------------------------------------------------
got = svc.GetOrder(orderId=oid)
validate_last()
same_order(got, rest("GET", f"/api/v1/orders/{oid}", KEY)[1])

# --- ListOrders: the aggregated queue, with an order from the app -------------
status, official = rest(
    "POST", "/api/v1/orders", APP,
    {"store_id": "S001", "lines": [{"sku": "COLA", "quantity": 1}], "channel_order_id": "app-zeep-1"},
)
check(status == 201, f"REST creates the official order ({status})")
page = svc.ListOrders()
validate_last()
status, queue = rest("GET", "/api/v1/stores/S001/orders", KEY)
check([o.id for o in page.order] == [o["id"] for o in queue["orders"]], "same queue as REST")
check(page.cursor == queue["cursor"] and page.hasMore == queue["has_more"], "same cursor")
for z, r in zip(page.order, queue["orders"]):
    same_order(z, r)
check({o.channel for o in page.order} == {"terminal", "official"}, "all channels")
quiet = svc.ListOrders(since=page.cursor)
validate_last()
check(len(quiet.order) == 0 and quiet.cursor == page.cursor, "nothing new after the cursor")

# --- UpdateOrderStatus, on the app's order --------------------------------
upd = svc.UpdateOrderStatus(orderId=official["id"], action="accept")
validate_last()
check(upd.status == "accepted", "accepted")
same_order(upd, rest("GET", f"/api/v1/orders/{official['id']}", KEY)[1])
changed = svc.ListOrders(since=page.cursor)
validate_last()
check([o.id for o in changed.order] == [official["id"]], "the change shows after the cursor")
acc = svc.ListOrders(status=["accepted"])
validate_last()
status, rq = rest("GET", "/api/v1/stores/S001/orders?status=accepted", KEY)
check([o.id for o in acc.order] == [o["id"] for o in rq["orders"]], "status filter like REST")
rej = svc.UpdateOrderStatus(orderId=oid, action="reject", reason="customer left")
validate_last()
check(rej.status == "rejected" and rej.change[-1].reason == "customer left", "rejected with reason")

# --- GetCatalog ----------------------------------------------------------------
cat = svc.GetCatalog()
validate_last()
status, rc = rest("GET", "/api/v1/stores/S001/catalog", KEY)
check(cat.version == rc["version"] and cat.unchanged is False, "catalog version like REST")
check([i.sku for i in cat.item] == [i["sku"] for i in rc["items"]], "same items")
for zi, ri in zip(cat.item, rc["items"]):
    check(zi.price == Decimal(ri["price"]) and zi.sellable == Decimal(ri["sellable"]), "prices/stock")
    check(zi.available == ri["available"], "availability")
same = svc.GetCatalog(knownVersion=cat.version)
validate_last()
check(same.unchanged is True and len(same.item) == 0, "unchanged catalog sends no items")

# --- Heartbeat ---------------------------------------------------------------
hb = svc.Heartbeat(
    softwareVersion="zeep-1.0",
    peripheral=[
        {"kind": "printer", "status": "paper_near_end", "detail": "roll low"},
        {"kind": "scale", "status": "ok"},
    ],
)
validate_last()
status, terms = rest("GET", "/api/v1/stores/S001/terminals", ADMIN)
mine = [t for t in terms["terminals"] if t["terminal_id"] == TID][0]
check(mine["software_version"] == "zeep-1.0", "heartbeat stored")
check(datetime.fromisoformat(mine["last_heartbeat_at"]) == hb, "same heartbeat time")
check(mine["peripherals"][0] == {"kind": "printer", "status": "paper_near_end", "detail": "roll low"}, "peripherals")

# --- A sale that already happened at the counter (soldAt): never refused -------
# Sold while the gateway was away, more cola than is in stock, at the price
# of the catalog the counter had: recorded, flagged, totalled as the receipt.
sold_at = datetime.fromisoformat("2026-12-03T09:15:30+08:00")
offline = [{"sku": "COLA", "quantity": Decimal("150"), "unitPrice": Decimal("3.00")}]
happened = svc.SubmitOrder(
    clientOrderId="zeep-off-1", line=offline, note="counter sale 7", soldAt=sold_at, catalogVersion="S001:1"
)
validate_last()
sent = history.last_sent["envelope"].find(f"{{{SOAP}}}Body")[0]
check(schema.validate(etree.fromstring(etree.tostring(sent))), f"XSD takes the request: {schema.error_log}")
check(happened.replayed is False and happened.order.total == Decimal("450.00"), f"total {happened.order.total}")
check(happened.order.note.startswith("⚠ short_stock, price_differs: COLA 3.00 (now 3.50)"), happened.order.note)
status, r = rest("GET", f"/api/v1/orders/{happened.order.id}", KEY)
check(r["attention"] == ["short_stock", "price_differs"], f"flags {r.get('attention')}")
check(datetime.fromisoformat(r["sold_at"]) == sold_at, f"sold at {r.get('sold_at')}")
same_order(happened.order, r)
again = svc.SubmitOrder(
    clientOrderId="zeep-off-1", line=offline, note="counter sale 7", soldAt=sold_at, catalogVersion="S001:1"
)
check(again.replayed is True and again.order.id == happened.order.id, "a replay is the same order")

# --- Faults carry the REST codes -----------------------------------------------
check(fault_code(svc.SubmitOrder, clientOrderId="zeep-2", line=[{"sku": "NOPE", "quantity": 1}])
      == ("soap:Client", "unknown_sku"), "unknown_sku")
check(fault_code(svc.SubmitOrder, clientOrderId="zeep-3", line=[{"sku": "COLA", "quantity": 100000}])
      == ("soap:Client", "out_of_stock"), "out_of_stock")
check(fault_code(svc.UpdateOrderStatus, orderId=oid, action="accept")
      == ("soap:Client", "illegal_transition"), "illegal_transition")
check(fault_code(svc.GetOrder, orderId="no-such-order") == ("soap:Client", "order_not_found"), "order_not_found")
other = make_client(OTHER_TID, OTHER_KEY).service
check(fault_code(other.GetOrder, orderId=oid) == ("soap:Client", "order_not_found"), "another store's order looks missing")
check(len(other.ListOrders().order) == 0, "another store's queue is its own")
validate_last()
stranger = make_client(TID, "gk_wrong").service
check(fault_code(stranger.ListOrders) == ("soap:Client", "unauthorized"), "wrong key")
status, r = rest("GET", f"/api/v1/orders/{oid}", KEY)
check(r["status"] == "rejected", "faults changed nothing")

# --- Payments: this gateway has no provider, so like REST's 503 ----------------
# (paying and refunding with a provider: tests/interop/zeep_payments.py)
check(fault_code(svc.GetPayment, orderId=oid) == ("soap:Server", "payments_not_configured"), "payments off")
check(fault_code(svc.PayOrder, orderId=oid, authCode="134567890123456789")
      == ("soap:Server", "payments_not_configured"), "no charge without a provider")

done("interop")
