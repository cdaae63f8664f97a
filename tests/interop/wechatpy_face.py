"""wechatpy (1.8.x), the Python WeChat Pay v2 client merchants use, drives the
simulator's WeChat face (`hw-sim payments`) as it would drive the real
service, and checks what the service documents: the answers, their fields,
their error codes, and the signature of every signed answer under the
merchant key.

Environment: WECHATPAY_URL (the simulator's base URL, which also serves its
control API), WECHATPAY_APPID, WECHATPAY_MCH_ID, WECHATPAY_KEY.

The simulator serves plain HTTP here with client certificates off, so
wechatpy is given no certificate for /secapi/ (reverse, refund); the real
service needs one. wechatpy reaches the simulator through its own
`API_BASE_URL`, set on the client (nothing in wechatpy is changed), and every
answer is recorded by a response hook on its own requests session.

Prints one `ok <what>` line per check and `PASS <n> checks` at the end;
exits non-zero at the first mismatch.
"""

import hashlib
import hmac
import json
import os
import re
import sys
import time
import urllib.request

import xmltodict
from wechatpy.exceptions import WeChatPayException
from wechatpy.pay import WeChatPay
from wechatpy.pay.utils import calculate_signature_hmac

BASE = os.environ["WECHATPAY_URL"].rstrip("/")
APPID = os.environ["WECHATPAY_APPID"]
MCH_ID = os.environ["WECHATPAY_MCH_ID"]
KEY = os.environ["WECHATPAY_KEY"]

counts = {"checks": 0, "signed": 0}


def check(cond, what):
    if not cond:
        print("FAIL " + what, flush=True)
        sys.exit(1)
    counts["checks"] += 1
    print("ok " + what, flush=True)


# --- the client, pointed at the simulator through its own configuration ----
client = WeChatPay(appid=APPID, api_key=KEY, mch_id=MCH_ID, timeout=10)
client.API_BASE_URL = BASE + "/"

# Every answer wechatpy receives, with the sign type its request used.
answers = []


def record(response, *args, **kwargs):
    body = response.request.body or b""
    if isinstance(body, str):
        body = body.encode()
    sign_type = "HMAC-SHA256" if b"HMAC-SHA256" in body else "MD5"
    answers.append((response.url, sign_type, response.content))
    return response


client._http.hooks["response"].append(record)


def parse(raw):
    return xmltodict.parse(raw)["xml"]


def verify(data, sign_type):
    """The answer's sign under the merchant key, by the request's type."""
    if sign_type == "MD5":
        return client.check_signature(data)
    given = data.get("sign")
    rest = {k: v for k, v in data.items() if k != "sign"}
    return given is not None and hmac.compare_digest(
        given, calculate_signature_hmac(rest, KEY)
    )


def own_hmac(data):
    """HMAC-SHA256 computed here, not by wechatpy: k=v&...&key=KEY."""
    pairs = [f"{k}={v}" for k, v in sorted(data.items()) if k != "sign" and v]
    text = "&".join(pairs + ["key=" + KEY])
    return hmac.new(KEY.encode(), text.encode(), hashlib.sha256).hexdigest().upper()


def last_answer():
    url, sign_type, raw = answers[-1]
    return parse(raw), sign_type


def ok_call(what, fn, *args, **kwargs):
    """A call wechatpy must see succeed (return_code and result_code SUCCESS)."""
    try:
        result = fn(*args, **kwargs)
    except WeChatPayException as e:
        check(False, f"{what}: {e!r}")
    check(isinstance(result, dict), f"{what}: wechatpy read the answer")
    return result


def failed_call(what, code, fn, *args, **kwargs):
    """A call wechatpy must see refused with err_code `code`; the exception."""
    try:
        fn(*args, **kwargs)
    except WeChatPayException as e:
        check(
            e.return_code == "SUCCESS" and e.result_code == "FAIL" and e.errcode == code,
            f"{what}: FAIL {code} (got {e.return_code}/{e.result_code}/{e.errcode} {e.errmsg})",
        )
        return e
    check(False, f"{what}: answered SUCCESS, expected {code}")


def scenario(s):
    req = urllib.request.Request(
        BASE + "/scenario",
        data=json.dumps(s).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req) as r:
        check(r.status == 200, f"scenario {s} taken")


def poll(what, fn, done, limit_s=20):
    """Calls fn() until done(result); never longer than limit_s."""
    deadline = time.monotonic() + limit_s
    while True:
        result = fn()
        if done(result):
            return result
        if time.monotonic() > deadline:
            check(False, f"{what}: still {result!r} after {limit_s} s")
        time.sleep(0.1)


def has(data, fields, what):
    missing = [f for f in fields if not data.get(f)]
    check(not missing, f"{what} carries {', '.join(fields)} (missing {missing})")


PAID_FIELDS = [
    "openid", "is_subscribe", "trade_type", "bank_type", "fee_type",
    "total_fee", "cash_fee", "transaction_id", "out_trade_no", "time_end",
]
IP = "127.0.0.1"
run = str(int(time.time() * 1000))[-8:]


def code(n):
    """A WeChat payment code (18 digits, 10-15 first) of this run."""
    return f"13{run}{n:08d}"


def trade(name):
    return f"wx{run}{name}"


# --- micropay: paid at once ------------------------------------------------
c = code(1)
scenario({"auth_code": c, "outcome": "success"})
paid = ok_call(
    "micropay success",
    client.micropay.create,
    body="cola", total_fee=2116, auth_code=c, client_ip=IP, out_trade_no=trade("ok"),
)
has(paid, PAID_FIELDS, "the micropay answer")
check(paid["is_subscribe"] == "N", "is_subscribe is N")
check(paid["cash_fee"] == paid["total_fee"] == "2116", "cash_fee equals total_fee")
check(paid["fee_type"] == "CNY" and paid["trade_type"] == "MICROPAY", "CNY, MICROPAY")
check(re.fullmatch(r"20\d{12}", paid["time_end"]) is not None, "time_end is yyyyMMddHHmmss")
txn = paid["transaction_id"]

# orderquery by transaction_id alone
q = ok_call("orderquery by transaction_id", client.micropay.query, transaction_id=txn)
check(q["trade_state"] == "SUCCESS" and q["out_trade_no"] == trade("ok"),
      "orderquery by transaction_id finds the charge, SUCCESS")
has(q, PAID_FIELDS + ["trade_state_desc"], "the orderquery answer")
q = ok_call("orderquery by out_trade_no", client.micropay.query, out_trade_no=trade("ok"))
check(q["transaction_id"] == txn, "orderquery by out_trade_no: the same transaction_id")
failed_call("orderquery of an unknown transaction_id", "ORDERNOTEXIST",
            client.micropay.query, transaction_id="4200000000000000000000")
failed_call("orderquery naming no order", "PARAM_ERROR", client.micropay.query)

# --- USERPAYING, then paid --------------------------------------------------
c = code(2)
scenario({"auth_code": c, "outcome": "userpaying_then_success", "after_ms": 300})
failed_call("micropay waiting for the PIN", "USERPAYING",
            client.micropay.create,
            body="cola", total_fee=500, auth_code=c, client_ip=IP, out_trade_no=trade("up"))
q = ok_call("orderquery while paying", client.micropay.query, out_trade_no=trade("up"))
check(q["trade_state"] in ("USERPAYING", "SUCCESS") and q.get("trade_state_desc"),
      f"orderquery while paying: {q['trade_state']} with trade_state_desc")
q = poll("USERPAYING then SUCCESS",
         lambda: client.micropay.query(out_trade_no=trade("up")),
         lambda r: r["trade_state"] == "SUCCESS")
has(q, PAID_FIELDS + ["trade_state_desc"], "the orderquery answer once paid")

# --- USERPAYING for ever, then reverse --------------------------------------
c = code(3)
scenario({"auth_code": c, "outcome": "userpaying_forever"})
failed_call("micropay never confirmed", "USERPAYING",
            client.micropay.create,
            body="cola", total_fee=500, auth_code=c, client_ip=IP, out_trade_no=trade("uf"))
q = ok_call("orderquery of the unconfirmed charge", client.micropay.query, out_trade_no=trade("uf"))
check(q["trade_state"] == "USERPAYING", "still USERPAYING")
check(q.get("trade_state_desc"), "USERPAYING carries trade_state_desc")
r = ok_call("reverse", client.order.reverse, out_trade_no=trade("uf"))
check(r.get("recall") == "N", "reverse: recall N")
q = ok_call("orderquery after reverse", client.micropay.query, out_trade_no=trade("uf"))
check(q["trade_state"] == "REVOKED" and q.get("trade_state_desc"), "REVOKED, described")

# reverse by transaction_id alone
c = code(4)
scenario({"auth_code": c, "outcome": "success"})
p = ok_call("micropay to reverse", client.micropay.create,
            body="cola", total_fee=300, auth_code=c, client_ip=IP, out_trade_no=trade("rv"))
ok_call("reverse by transaction_id", client.order.reverse, transaction_id=p["transaction_id"])
q = ok_call("orderquery after that reverse", client.micropay.query, out_trade_no=trade("rv"))
check(q["trade_state"] == "REVOKED", "reverse by transaction_id revoked the charge")

# --- definite refusals -----------------------------------------------------
c = code(5)
scenario({"auth_code": c, "outcome": "insufficient_balance"})
failed_call("micropay, the customer's balance short", "NOTENOUGH",
            client.micropay.create,
            body="cola", total_fee=500, auth_code=c, client_ip=IP, out_trade_no=trade("ne"))
c = code(6)
scenario({"auth_code": c, "outcome": "invalid_code"})
failed_call("micropay, an invalid code", "AUTH_CODE_INVALID",
            client.micropay.create,
            body="cola", total_fee=500, auth_code=c, client_ip=IP, out_trade_no=trade("ic"))

# --- refunds ----------------------------------------------------------------
# (`trade("ok")`, 21.16 paid, refunds SUCCESS at once by default)
rf = ok_call("refund 3.00", client.refund.apply,
             total_fee=2116, refund_fee=300, out_refund_no=trade("ok") + "r1",
             out_trade_no=trade("ok"))
has(rf, ["transaction_id", "out_trade_no", "out_refund_no", "refund_id",
         "refund_fee", "total_fee", "cash_fee"], "the refund answer")
check(rf["transaction_id"] == txn and rf["refund_fee"] == "300" and rf["cash_fee"] == "2116",
      "the refund answer names the charge and the amount")
again = ok_call("the same refund again", client.refund.apply,
                total_fee=2116, refund_fee=300, out_refund_no=trade("ok") + "r1",
                out_trade_no=trade("ok"))
check(again["refund_id"] == rf["refund_id"], "the same out_refund_no is the same refund")
failed_call("over-refund (more than is refundable)", "INVALID_REQUEST",
            client.refund.apply,
            total_fee=2116, refund_fee=2000, out_refund_no=trade("ok") + "r2",
            out_trade_no=trade("ok"))
failed_call("the same out_refund_no with another amount", "REFUND_FEE_MISMATCH",
            client.refund.apply,
            total_fee=2116, refund_fee=400, out_refund_no=trade("ok") + "r1",
            out_trade_no=trade("ok"))
rest = ok_call("refund the rest by transaction_id", client.refund.apply,
               total_fee=2116, refund_fee=1816, out_refund_no=trade("ok") + "r3",
               transaction_id=txn)
check(rest["out_trade_no"] == trade("ok"), "refund by transaction_id names the order")
failed_call("a refund of a fully refunded order", "ERROR",
            client.refund.apply,
            total_fee=2116, refund_fee=1, out_refund_no=trade("ok") + "r4",
            out_trade_no=trade("ok"))
try:
    client.refund.apply(total_fee=2116, refund_fee=2117, out_refund_no=trade("ok") + "r5",
                        out_trade_no=trade("ok"))
    check(False, "refund_fee above total_fee: answered SUCCESS")
except WeChatPayException as e:
    check(e.return_code == "FAIL", f"refund_fee above total_fee: return_code FAIL ({e.return_msg})")

q = ok_call("orderquery of the refunded order", client.micropay.query, out_trade_no=trade("ok"))
check(q["trade_state"] == "REFUND", "the refunded order is REFUND")

# refundquery, by each number
for what, kwargs in [
    ("transaction_id", {"transaction_id": txn}),
    ("out_trade_no", {"out_trade_no": trade("ok")}),
]:
    rq = ok_call(f"refundquery by {what}", client.refund.query, **kwargs)
    check(rq["refund_count"] == "2", f"refundquery by {what}: both refunds")
    has(rq, ["transaction_id", "out_trade_no", "total_fee", "cash_fee", "refund_count"],
        f"refundquery by {what}")
    for n in range(2):
        has(rq, [f"out_refund_no_{n}", f"refund_id_{n}", f"refund_fee_{n}",
                 f"refund_status_{n}", f"refund_channel_{n}", f"refund_recv_accout_{n}",
                 f"refund_success_time_{n}"], f"refund {n}")
        check(re.fullmatch(r"20\d\d-\d\d-\d\d \d\d:\d\d:\d\d", rq[f"refund_success_time_{n}"])
              is not None, f"refund_success_time_{n} is yyyy-MM-dd HH:mm:ss")
    check([rq["refund_fee_0"], rq["refund_fee_1"]] == ["300", "1816"],
          f"refundquery by {what}: the amounts in order")
rq = ok_call("refundquery by refund_id", client.refund.query, refund_id=rf["refund_id"])
check(rq["refund_count"] == "1" and rq["out_refund_no_0"] == trade("ok") + "r1"
      and rq["refund_status_0"] == "SUCCESS", "refundquery by refund_id: that refund, SUCCESS")
rq = ok_call("refundquery by out_refund_no", client.refund.query,
             out_refund_no=trade("ok") + "r3")
check(rq["refund_count"] == "1" and rq["refund_fee_0"] == "1816",
      "refundquery by out_refund_no: that refund")
failed_call("refundquery of an order never refunded", "REFUNDNOTEXIST",
            client.refund.query, out_trade_no=trade("up"))
failed_call("refundquery of an unknown refund", "REFUNDNOTEXIST",
            client.refund.query, out_refund_no="no-such-refund")

# processing, then success
c = code(7)
scenario({"auth_code": c, "refund": "processing_then_success", "refund_after_ms": 300})
ok_call("micropay to refund later", client.micropay.create,
        body="cola", total_fee=1000, auth_code=c, client_ip=IP, out_trade_no=trade("ps"))
ok_call("refund accepted", client.refund.apply,
        total_fee=1000, refund_fee=1000, out_refund_no=trade("ps") + "r1",
        out_trade_no=trade("ps"))
rq = ok_call("refundquery at once", client.refund.query, out_refund_no=trade("ps") + "r1")
check(rq["refund_status_0"] in ("PROCESSING", "SUCCESS"),
      f"accepted, then {rq['refund_status_0']}")
check(rq["refund_status_0"] != "PROCESSING" or "refund_success_time_0" not in rq,
      "PROCESSING has no refund_success_time")
rq = poll("PROCESSING then SUCCESS",
          lambda: client.refund.query(out_refund_no=trade("ps") + "r1"),
          lambda r: r["refund_status_0"] != "PROCESSING")
check(rq["refund_status_0"] == "SUCCESS" and rq.get("refund_success_time_0"),
      "the refund ends SUCCESS, with its time")

# processing, then closed: the amount is refundable again
c = code(8)
scenario({"auth_code": c, "refund": "closed", "refund_after_ms": 300})
ok_call("micropay to refund, closed", client.micropay.create,
        body="cola", total_fee=1000, auth_code=c, client_ip=IP, out_trade_no=trade("cl"))
ok_call("refund accepted, to close", client.refund.apply,
        total_fee=1000, refund_fee=1000, out_refund_no=trade("cl") + "r1",
        out_trade_no=trade("cl"))
rq = poll("PROCESSING then REFUNDCLOSE",
          lambda: client.refund.query(out_trade_no=trade("cl")),
          lambda r: r["refund_status_0"] != "PROCESSING")
check(rq["refund_status_0"] == "REFUNDCLOSE" and "refund_success_time_0" not in rq,
      "the refund ends REFUNDCLOSE, without a success time")
q = ok_call("orderquery after the close", client.micropay.query, out_trade_no=trade("cl"))
check(q["trade_state"] == "SUCCESS", "every refund closed: the order is paid again")
ok_call("refund the closed amount again", client.refund.apply,
        total_fee=1000, refund_fee=1000, out_refund_no=trade("cl") + "r2",
        out_trade_no=trade("cl"))

# processing, then CHANGE: stays counted at the provider
c = code(9)
scenario({"auth_code": c, "refund": "change", "refund_after_ms": 0})
ok_call("micropay to refund, changed", client.micropay.create,
        body="cola", total_fee=1000, auth_code=c, client_ip=IP, out_trade_no=trade("ch"))
ok_call("refund accepted, to change", client.refund.apply,
        total_fee=1000, refund_fee=1000, out_refund_no=trade("ch") + "r1",
        out_trade_no=trade("ch"))
rq = ok_call("refundquery of the changed refund", client.refund.query,
             out_trade_no=trade("ch"))
check(rq["refund_status_0"] == "CHANGE", "the refund is CHANGE")
failed_call("a refund after CHANGE", "ERROR",
            client.refund.apply,
            total_fee=1000, refund_fee=1, out_refund_no=trade("ch") + "r2",
            out_trade_no=trade("ch"))

# the merchant's balance short: NOTENOUGH, then accepted
c = code(10)
scenario({"auth_code": c, "refund_notenough_calls": 1})
ok_call("micropay to refund, balance short", client.micropay.create,
        body="cola", total_fee=1000, auth_code=c, client_ip=IP, out_trade_no=trade("nb"))
e = failed_call("refund, the merchant's balance short", "NOTENOUGH",
                client.refund.apply,
                total_fee=1000, refund_fee=500, out_refund_no=trade("nb") + "r1",
                out_trade_no=trade("nb"))
check("余额不足" in (e.errmsg or ""), f"NOTENOUGH described: {e.errmsg}")
ok_call("the same refund once topped up", client.refund.apply,
        total_fee=1000, refund_fee=500, out_refund_no=trade("nb") + "r1",
        out_trade_no=trade("nb"))

# --- HMAC-SHA256 ------------------------------------------------------------
h = ok_call("orderquery signed HMAC-SHA256", client.post, "pay/orderquery", data={
    "appid": APPID, "out_trade_no": trade("ok"), "sign_type": "HMAC-SHA256",
})
check("sign_type" not in h, "an HMAC-SHA256 answer carries no sign_type")
check(h.get("sign") == own_hmac(h), "the HMAC-SHA256 answer verifies (own HMAC)")
check(not client.check_signature(h), "the HMAC-SHA256 answer is not an MD5 signature")
h = ok_call("refundquery signed HMAC-SHA256", client.post, "pay/refundquery", data={
    "appid": APPID, "transaction_id": txn, "sign_type": "HMAC-SHA256",
})
check(h.get("sign") == own_hmac(h) and "sign_type" not in h,
      "the HMAC-SHA256 refundquery answer verifies, no sign_type")

# --- every answer received: signed with the merchant key --------------------
for url, sign_type, raw in answers:
    data = parse(raw)
    if data.get("return_code") != "SUCCESS":
        # The real service does not sign a refused call (return_code FAIL).
        check("sign" not in data, f"unsigned return_code FAIL from {url}")
        continue
    check(verify(data, sign_type), f"{sign_type} signature of the answer from {url}")
    counts["signed"] += 1
# About 55 calls answer signed (polls add a few): all of them were checked.
check(counts["signed"] >= 50, f"{counts['signed']} signed answers verified")
print(f"PASS {counts['checks']} checks, {counts['signed']} signatures", flush=True)
