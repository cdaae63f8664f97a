"""What both zeep scripts share: checks, plain HTTP, the WSDL and its XSD,
zeep clients that record what the server sent, and validation of every
server message against the XSD.

Environment: GATEWAY_URL. Imported by zeep_terminal.py and zeep_payments.py
(Python puts the script's folder on the import path).
"""

import json
import os
import urllib.error
import urllib.request

import zeep
from lxml import etree
from zeep.exceptions import Fault
from zeep.plugins import HistoryPlugin
from zeep.transports import Transport
from zeep.wsse.username import UsernameToken

NS = "urn:smart-terminal:gateway:v1"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
XSD = "http://www.w3.org/2001/XMLSchema"

BASE = os.environ["GATEWAY_URL"].rstrip("/")

counts = {"checks": 0, "received": 0}


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    counts["checks"] += 1


def http(method, url, key=None, body=None):
    """A JSON call; the status and the decoded body (None when empty)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if key is not None:
        req.add_header("Authorization", "Bearer " + key)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


# --- the WSDL is XML, and its schema compiles -------------------------------
wsdl_url = BASE + "/soap/terminal?wsdl"
with urllib.request.urlopen(wsdl_url) as r:
    wsdl = etree.fromstring(r.read())
schema_el = wsdl.find(f".//{{{XSD}}}schema")
check(schema_el is not None, "the WSDL has an inline xsd:schema")
schema = etree.XMLSchema(etree.fromstring(etree.tostring(schema_el)))

history = HistoryPlugin()


def make_client(tid, key, timeout=None):
    """A zeep client of terminal `tid`; `timeout` (s) for long operations."""
    transport = Transport(operation_timeout=timeout) if timeout else None
    return zeep.Client(wsdl_url, wsse=UsernameToken(tid, key), plugins=[history], transport=transport)


def validate_last():
    """The body payload the server last sent must satisfy the XSD."""
    payload = history.last_received["envelope"].find(f"{{{SOAP}}}Body")[0]
    if payload.tag == f"{{{SOAP}}}Fault":
        payload = payload.find("detail")[0]
    doc = etree.fromstring(etree.tostring(payload))
    if not schema.validate(doc):
        raise AssertionError(f"XSD refuses {doc.tag}: {schema.error_log}")
    counts["received"] += 1


def fault_code(call, *args, **kwargs):
    """Calls, expecting a Fault: its faultcode and the detail's error code."""
    try:
        call(*args, **kwargs)
    except Fault as f:
        validate_last()
        return f.code, f.detail.find(f"{{{NS}}}error/{{{NS}}}code").text
    raise AssertionError("expected a Fault")


def done(what):
    print(f"zeep {zeep.__version__}: {counts['checks']} checks, {counts['received']} server messages valid against the XSD")
    print(f"zeep {what}: all checks passed")
