"""Drives hw-sim's Alipay face (`/gateway.do`) with an Alipay SDK nobody on
this project wrote, the way a merchant's integration would, and checks what
the SDK hands back. Every answer is verified by the SDK itself with Alipay's
(the simulator's) RSA2 public key; one client is given a wrong key and must
refuse the answers.

ALIPAY_SDK picks the SDK:
- `python-alipay-sdk` (3.4.x, `from alipay import AliPay`): calls
  `GET /gateway.do?<every parameter>`. It has no gateway setting: its
  constructor sets the `_gateway` attribute (production or sandbox), which
  is pointed at the simulator here.
- `alipay-sdk-python` (3.7.x, Alipay's own, `alipay.aop.api`): POSTs with
  the common parameters and `sign` in the query string and `biz_content` in
  the form body; `AlipayClientConfig.server_url` is its gateway setting.
  Its HTTP layer always connects to port 80 (443 for https) and fails on a
  `server_url` with a port (it adds the port, an int, to a str), so the
  URL names no port and a thin transport shim below sends its connections
  to the simulator's port. Nothing else of the SDK is touched.

Environment: ALIPAY_GATEWAY (http://127.0.0.1:PORT/gateway.do),
ALIPAY_CONTROL (the simulator's control API base), ALIPAY_APP_ID,
ALIPAY_APP_PRIVATE_KEY, ALIPAY_PUBLIC_KEY, ALIPAY_WRONG_PUBLIC_KEY (PEM
files). Prints one `ok …` line per check and a closing count; exits non-zero
on the first failure.
"""

import http.client
import json
import os
import re
import sys
import time
import types
import urllib.parse
import urllib.request

SDK = os.environ["ALIPAY_SDK"]
GATEWAY = os.environ["ALIPAY_GATEWAY"]
CONTROL = os.environ["ALIPAY_CONTROL"]
APP_ID = os.environ["ALIPAY_APP_ID"]


def _read(var):
    with open(os.environ[var], encoding="ascii") as f:
        return f.read()


APP_PRIVATE = _read("ALIPAY_APP_PRIVATE_KEY")
ALIPAY_PUBLIC = _read("ALIPAY_PUBLIC_KEY")
WRONG_PUBLIC = _read("ALIPAY_WRONG_PUBLIC_KEY")

CHECKS = 0


def check(cond, what, detail=None):
    global CHECKS
    if not cond:
        print(f"FAILED {what}: {detail!r}", flush=True)
        sys.exit(1)
    CHECKS += 1
    print(f"ok {what}", flush=True)


def control(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(CONTROL + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as r:
        text = r.read().decode()
    return json.loads(text) if text else None


def scenario(auth_code, **s):
    control("PUT", "/scenario", dict(s, auth_code=auth_code))


# ------------------------------------------------------------------ clients


class PythonAlipaySdk:
    """python-alipay-sdk: every call a GET with all parameters."""

    def __init__(self, alipay_public_key):
        from alipay import AliPay
        from alipay.exceptions import AliPayValidationError

        self.verify_error = AliPayValidationError
        self.client = AliPay(
            appid=APP_ID,
            app_notify_url=None,
            app_private_key_string=APP_PRIVATE,
            alipay_public_key_string=alipay_public_key,
            sign_type="RSA2",
        )
        # The SDK's only gateway knob: the attribute its constructor sets.
        self.client._gateway = GATEWAY

    def pay(self, out_trade_no, auth_code, amount, subject):
        return self.client.api_alipay_trade_pay(
            out_trade_no, "bar_code", auth_code, subject, total_amount=amount
        )

    def query(self, out_trade_no=None, trade_no=None):
        return self.client.api_alipay_trade_query(
            out_trade_no=out_trade_no, trade_no=trade_no
        )

    def cancel(self, out_trade_no=None, trade_no=None):
        return self.client.api_alipay_trade_cancel(
            out_trade_no=out_trade_no, trade_no=trade_no
        )

    def refund(self, amount, out_trade_no=None, trade_no=None, out_request_no=None):
        extra = {} if out_request_no is None else {"out_request_no": out_request_no}
        return self.client.api_alipay_trade_refund(
            amount, out_trade_no=out_trade_no, trade_no=trade_no, **extra
        )

    def refund_query(self, out_request_no, out_trade_no=None, trade_no=None):
        return self.client.api_alipay_trade_fastpay_refund_query(
            out_request_no, trade_no=trade_no, out_trade_no=out_trade_no
        )


def _pkcs1(pem):
    """alipay-sdk-python wants the app key as PKCS#1 (it adds the
    `BEGIN RSA PRIVATE KEY` lines when missing); the fixture is PKCS#8."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(pem.encode(), password=None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def _shim_aop_transport(sim_port):
    """alipay-sdk-python opens `httplib.HTTPConnection(host, port=80)`: give
    its HTTP helper module a connection class that goes to `sim_port`
    instead."""
    import alipay.aop.api.util.WebUtils as web

    class ToSimulator(http.client.HTTPConnection):
        def __init__(self, host, port=None, **kw):
            super().__init__(host, sim_port, **kw)

    web.httplib = types.SimpleNamespace(
        HTTPConnection=ToSimulator, HTTPSConnection=http.client.HTTPSConnection
    )


class AlipaySdkPython:
    """Alipay's own SDK: common parameters in the query string,
    biz_content in the form body."""

    def __init__(self, alipay_public_key, charset="utf-8"):
        from alipay.aop.api.AlipayClientConfig import AlipayClientConfig
        from alipay.aop.api.DefaultAlipayClient import DefaultAlipayClient
        from alipay.aop.api.exception.Exception import ResponseException

        url = urllib.parse.urlsplit(GATEWAY)
        _shim_aop_transport(url.port)
        self.verify_error = ResponseException
        config = AlipayClientConfig()
        config.server_url = f"{url.scheme}://{url.hostname}{url.path}"
        config.app_id = APP_ID
        config.app_private_key = _pkcs1(APP_PRIVATE)
        config.alipay_public_key = alipay_public_key
        config.sign_type = "RSA2"
        config.charset = charset
        self.client = DefaultAlipayClient(config)

    def _call(self, request_class, biz):
        request = request_class()
        request.biz_content = {k: v for k, v in biz.items() if v is not None}
        return json.loads(self.client.execute(request))

    def pay(self, out_trade_no, auth_code, amount, subject):
        from alipay.aop.api.request.AlipayTradePayRequest import AlipayTradePayRequest

        return self._call(
            AlipayTradePayRequest,
            {
                "out_trade_no": out_trade_no,
                "scene": "bar_code",
                "auth_code": auth_code,
                "total_amount": amount,
                "subject": subject,
            },
        )

    def query(self, out_trade_no=None, trade_no=None):
        from alipay.aop.api.request.AlipayTradeQueryRequest import (
            AlipayTradeQueryRequest,
        )

        return self._call(
            AlipayTradeQueryRequest,
            {"out_trade_no": out_trade_no, "trade_no": trade_no},
        )

    def cancel(self, out_trade_no=None, trade_no=None):
        from alipay.aop.api.request.AlipayTradeCancelRequest import (
            AlipayTradeCancelRequest,
        )

        return self._call(
            AlipayTradeCancelRequest,
            {"out_trade_no": out_trade_no, "trade_no": trade_no},
        )

    def refund(self, amount, out_trade_no=None, trade_no=None, out_request_no=None):
        from alipay.aop.api.request.AlipayTradeRefundRequest import (
            AlipayTradeRefundRequest,
        )

        return self._call(
            AlipayTradeRefundRequest,
            {
                "refund_amount": amount,
                "out_trade_no": out_trade_no,
                "trade_no": trade_no,
                "out_request_no": out_request_no,
            },
        )

    def refund_query(self, out_request_no, out_trade_no=None, trade_no=None):
        from alipay.aop.api.request.AlipayTradeFastpayRefundQueryRequest import (
            AlipayTradeFastpayRefundQueryRequest,
        )

        return self._call(
            AlipayTradeFastpayRefundQueryRequest,
            {
                "out_request_no": out_request_no,
                "out_trade_no": out_trade_no,
                "trade_no": trade_no,
            },
        )


def client(public_key, **kw):
    if SDK == "python-alipay-sdk":
        return PythonAlipaySdk(public_key, **kw)
    if SDK == "alipay-sdk-python":
        return AlipaySdkPython(public_key, **kw)
    raise SystemExit(f"unknown ALIPAY_SDK {SDK!r}")


# -------------------------------------------------------------------- cases

TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
PREFIX = "py" if SDK == "python-alipay-sdk" else "aop"


def code(n):
    """An Alipay payment code of this run: 18 digits starting 28."""
    return f"28{PREFIX == 'py' and 1 or 2}{n:015d}"


def paid_fields(a, what, total):
    check(
        re.fullmatch(r"\d{3}\*{4}\d{4}", a.get("buyer_logon_id", "")),
        f"{what}: buyer_logon_id is a masked login",
        a,
    )
    check(
        re.fullmatch(r"2088\d{12}", a.get("buyer_user_id", "")),
        f"{what}: buyer_user_id is 2088 and 12 digits",
        a,
    )
    for f in ("receipt_amount", "buyer_pay_amount", "invoice_amount"):
        check(a.get(f) == total, f"{what}: {f} {total}", a)
    check(a.get("point_amount") == "0.00", f"{what}: point_amount 0.00", a)
    check(TIME.match(a.get("gmt_payment", "")), f"{what}: gmt_payment", a)
    check(
        a.get("fund_bill_list") == [{"fund_channel": "ALIPAYACCOUNT", "amount": total}],
        f"{what}: fund_bill_list",
        a,
    )


def main():
    sdk = client(ALIPAY_PUBLIC)
    order = lambda n: f"{PREFIX}-{n}"  # noqa: E731

    # Paid at once.
    scenario(code(1), outcome="success")
    a = sdk.pay(order(1), code(1), "21.16", "门店消费")
    check(a.get("code") == "10000", "pay: success", a)
    check(a.get("out_trade_no") == order(1), "pay: out_trade_no", a)
    check(a.get("total_amount") == "21.16", "pay: total_amount", a)
    paid_fields(a, "pay", "21.16")
    trade_no = a.get("trade_no")
    check(bool(trade_no), "pay: trade_no", a)

    # Query by trade_no alone.
    q = sdk.query(trade_no=trade_no)
    check(q.get("code") == "10000", "query by trade_no: 10000", q)
    check(q.get("out_trade_no") == order(1), "query by trade_no: finds the trade", q)
    check(q.get("trade_status") == "TRADE_SUCCESS", "query by trade_no: TRADE_SUCCESS", q)
    paid_fields(q, "query", "21.16")

    # A partial refund, its query, a repeat, an over-refund.
    r = sdk.refund("5.00", out_trade_no=order(1), out_request_no="r1")
    check(r.get("code") == "10000", "refund: accepted", r)
    check(r.get("fund_change") == "Y", "refund: fund_change Y", r)
    check(r.get("refund_fee") == "5.00", "refund: refund_fee is what went back", r)
    check(r.get("trade_no") == trade_no, "refund: trade_no", r)
    check(r.get("out_trade_no") == order(1), "refund: out_trade_no", r)
    check(r.get("buyer_user_id") == a.get("buyer_user_id"), "refund: buyer_user_id", r)
    check(r.get("buyer_logon_id") == a.get("buyer_logon_id"), "refund: buyer_logon_id", r)
    check(TIME.match(r.get("gmt_refund_pay", "")), "refund: gmt_refund_pay", r)
    rq = sdk.refund_query("r1", out_trade_no=order(1))
    check(rq.get("code") == "10000", "refund query: 10000", rq)
    check(rq.get("refund_status") == "REFUND_SUCCESS", "refund query: REFUND_SUCCESS", rq)
    check(rq.get("refund_amount") == "5.00", "refund query: refund_amount", rq)
    check(rq.get("total_amount") == "21.16", "refund query: total_amount", rq)
    check(rq.get("out_request_no") == "r1", "refund query: out_request_no", rq)
    again = sdk.refund("5.00", out_trade_no=order(1), out_request_no="r1")
    check(
        again.get("code") == "10000" and again.get("fund_change") == "N",
        "refund repeated: accepted, no money moves again",
        again,
    )
    over = sdk.refund("16.17", trade_no=trade_no, out_request_no="r2")
    check(
        (over.get("code"), over.get("sub_code"))
        == ("40004", "ACQ.REASON_TRADE_REFUND_FEE_ERR"),
        "over-refund: refused",
        over,
    )
    none = sdk.refund_query("r2", trade_no=trade_no)
    check(
        none.get("code") == "10000" and "refund_amount" not in none,
        "refund query of a refund never made: no refund data",
        none,
    )
    entry = [e for e in control("GET", "/ledger")["charges"] if e["out_trade_no"] == order(1)]
    check(entry and entry[0]["refunded_fen"] == 500, "ledger: 5.00 refunded", entry)

    # A whole refund by trade_no alone, without out_request_no: it is
    # numbered by the out_trade_no.
    scenario(code(2), outcome="success")
    a2 = sdk.pay(order(2), code(2), "3.50", "门店消费")
    check(a2.get("code") == "10000", "pay 2: success", a2)
    r2 = sdk.refund("3.50", trade_no=a2["trade_no"])
    check(
        r2.get("code") == "10000" and r2.get("fund_change") == "Y",
        "whole refund by trade_no without out_request_no",
        r2,
    )
    rq2 = sdk.refund_query(order(2), trade_no=a2["trade_no"])
    check(
        rq2.get("refund_status") == "REFUND_SUCCESS" and rq2.get("refund_amount") == "3.50",
        "refund query by the out_trade_no as out_request_no",
        rq2,
    )

    # 10003 (the buyer confirms on the phone), then paid: found by querying.
    scenario(code(3), outcome="userpaying_then_success", after_ms=300)
    w = sdk.pay(order(3), code(3), "8.00", "门店消费")
    check(w.get("code") == "10003", "pay: 10003 waiting for the buyer", w)
    status = None
    for _ in range(200):
        q = sdk.query(out_trade_no=order(3))
        status = q.get("trade_status")
        if status != "WAIT_BUYER_PAY":
            break
        time.sleep(0.05)
    check(status == "TRADE_SUCCESS", "query after 10003: TRADE_SUCCESS", q)
    paid_fields(q, "query after 10003", "8.00")

    # Waiting for ever: cancelled.
    scenario(code(4), outcome="userpaying_forever")
    w = sdk.pay(order(4), code(4), "8.00", "门店消费")
    check(w.get("code") == "10003", "pay: 10003 again", w)
    c = sdk.cancel(out_trade_no=order(4))
    check(c.get("code") == "10000", "cancel: done", c)
    check(c.get("retry_flag") == "N", "cancel: retry_flag N", c)
    check(c.get("action") == "close", "cancel: action close (nothing was paid)", c)
    q = sdk.query(out_trade_no=order(4))
    check(q.get("trade_status") == "TRADE_CLOSED", "query after cancel: TRADE_CLOSED", q)

    # A refund Alipay is still processing: data, but no refund_status.
    scenario(code(5), outcome="success", refund="processing_forever")
    a5 = sdk.pay(order(5), code(5), "2.00", "门店消费")
    r5 = sdk.refund("1.00", out_trade_no=order(5), out_request_no="r1")
    check(
        r5.get("code") == "10000" and r5.get("fund_change") == "N",
        "refund processing: accepted, fund_change N",
        r5,
    )
    rq5 = sdk.refund_query("r1", trade_no=a5["trade_no"])
    check(
        rq5.get("refund_amount") == "1.00" and "refund_status" not in rq5,
        "refund query while processing: data without refund_status",
        rq5,
    )

    # A merchant balance short, then topped up.
    scenario(code(6), outcome="success", refund_notenough_calls=1)
    sdk.pay(order(6), code(6), "2.00", "门店消费")
    short = sdk.refund("2.00", out_trade_no=order(6), out_request_no="r1")
    check(
        short.get("sub_code") == "ACQ.SELLER_BALANCE_NOT_ENOUGH",
        "refund: merchant balance short",
        short,
    )
    ok = sdk.refund("2.00", out_trade_no=order(6), out_request_no="r1")
    check(ok.get("code") == "10000", "refund: the same number once topped up", ok)

    # Alipay's own SDK in GBK: request signed and answer verified in GBK.
    if SDK == "alipay-sdk-python":
        gbk = client(ALIPAY_PUBLIC, charset="GBK")
        scenario(code(7), outcome="success")
        g = gbk.pay(order(7), code(7), "1.00", "门店消费（GBK）")
        check(g.get("code") == "10000", "GBK: pay", g)
        q = gbk.query(trade_no=g["trade_no"])
        check(q.get("trade_status") == "TRADE_SUCCESS", "GBK: query", q)
        # An answer with Chinese text: written, signed and read in GBK.
        n = gbk.query(out_trade_no=order(99))
        check(
            (n.get("sub_code"), n.get("sub_msg")) == ("ACQ.TRADE_NOT_EXIST", "交易不存在"),
            "GBK: a Chinese answer verified and read",
            n,
        )

    # Verification is on: a client given the wrong Alipay key refuses
    # every answer.
    wrong = client(WRONG_PUBLIC)
    try:
        got = wrong.query(out_trade_no=order(1))
    except wrong.verify_error as e:
        check(True, f"wrong Alipay key: answer refused ({type(e).__name__})")
    else:
        check(False, "wrong Alipay key: answer refused", got)

    print(f"alipay interop ({SDK}): {CHECKS} checks passed", flush=True)


if __name__ == "__main__":
    main()
