#!/usr/bin/python3
# mxkit-test: alone (asserts a DNS timeout to within 0.1 s)
"""t/lib/mxdns.py (a real Knot DNS server) and common/dns (through t/dnsq):

  1. TXT: a 600-byte value served as three strings comes back joined and
     byte-exact; a multi-record RRset gives every record; quotes,
     backslashes and semicolons survive.
  2. NXDOMAIN, NODATA, REFUSED (a name outside every zone) and a name
     past the wire limits are told apart.
  3. set_zone() changes what is served at once; add_zone() adds a zone.
  4. knotd stopped, or frozen (SIGSTOP): common/dns says tempfail within
     its timeout, never ok; started/resumed: answers again.
  5. A zone file knotd cannot load: Knot.start() raises with knotd's log.
"""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack, StackError  # noqa: E402
from mxtest import tap, build_path  # noqa: E402
from mxdns import Knot, txt  # noqa: E402

LONG = "".join(chr(0x21 + i % 90) for i in range(600)).replace("\\", "/").replace('"', "'")
SPECIAL = 'v=x; q="quoted" back\\slash;'


def dnsq(servers, rrtype, name, timeout_ms=2000):
    """(status, why, [records], seconds) from t/dnsq."""
    t0 = time.monotonic()
    res = subprocess.run([build_path("t", "dnsq"), "-s", servers, "-t", str(timeout_ms),
                          rrtype, name], capture_output=True, text=True, timeout=60)
    took = time.monotonic() - t0
    lines = res.stdout.splitlines()
    head = lines[0].split(" ") if lines else ["(no output: %s)" % res.stderr, "", "0"]
    return head[0], " ".join(head[1:-1]), lines[1:], took


def unescape(text):
    """dnsq's \\DDD escapes back to bytes."""
    out, i = b"", 0
    while i < len(text):
        if text[i] == "\\":
            out += bytes([int(text[i + 1:i + 4])])
            i += 4
        else:
            out += text[i].encode()
            i += 1
    return out


with Stack("dns-lib") as st:
    tap.stack = st
    dns = Knot(st, {"vendor.test": [
        txt("@", "v=spf1 ip4:127.0.0.2 -all"),
        txt("long", LONG),
        txt("multi", "first"), txt("multi", "second"), txt("multi", "third"),
        txt("special", SPECIAL),
        "mail A 127.0.0.2",
    ]})
    dns.start()
    S = dns.servers

    # 1. TXT
    raw = dns.query("TXT", "long.vendor.test")
    tap.is_(raw[0].count('" "') if raw else -1, 2, "knot serves the 600-byte value as three strings")
    status, why, recs, _ = dnsq(S, "TXT", "long.vendor.test")
    tap.is_((status, len(recs)), ("ok", 1), "one record for the long value")
    tap.is_(unescape(recs[0]) if recs else b"", LONG.encode(), "strings joined, byte-exact")
    status, why, recs, _ = dnsq(S, "TXT", "multi.vendor.test")
    tap.is_(sorted(recs), ["first", "second", "third"], "every record of the RRset")
    status, why, recs, _ = dnsq(S, "TXT", "special.vendor.test")
    tap.is_(unescape(recs[0]) if recs else b"", SPECIAL.encode(), "quotes and backslashes exact")
    status, why, recs, _ = dnsq(S, "A", "mail.vendor.test")
    tap.is_((status, recs), ("ok", ["127.0.0.2"]), "A record")

    # 2. statuses
    tap.is_(dnsq(S, "TXT", "nothing.vendor.test")[0], "nxdomain", "NXDOMAIN")
    tap.is_(dnsq(S, "TXT", "mail.vendor.test")[0], "nodata", "NODATA (name exists, no TXT)")
    status, why, _, _ = dnsq(S, "TXT", "elsewhere.example")
    tap.is_(status, "tempfail", "REFUSED (outside every zone) is a temporary error: " + why)
    tap.is_(dnsq(S, "TXT", "x" * 64 + ".vendor.test")[0], "badname", "64-byte label refused")
    tap.is_(dnsq(S, "TXT", ("a" * 60 + ".") * 5 + "test")[0], "badname", "name over 253 bytes")

    # 3. changes while running
    dns.set_zone("vendor.test", [txt("@", "v=spf1 -all"), txt("multi", "only")])
    tap.is_(dnsq(S, "TXT", "vendor.test")[2], ["v=spf1 -all"], "set_zone: new value served")
    tap.is_(dnsq(S, "TXT", "multi.vendor.test")[2], ["only"], "set_zone: removed records gone")
    tap.is_(dnsq(S, "TXT", "long.vendor.test")[0], "nxdomain", "set_zone: dropped name NXDOMAIN")
    dns.add_zone("spoof.test", [txt("@", "v=spf1 ?all")])
    tap.is_(dnsq(S, "TXT", "spoof.test")[2], ["v=spf1 ?all"], "add_zone: new zone served")

    # 4. server down
    dns.stop()
    status, why, recs, took = dnsq(S, "TXT", "vendor.test", timeout_ms=1500)
    tap.is_(status, "tempfail", "knotd stopped: tempfail (%s)" % why)
    tap.ok(took < 3.0, "knotd stopped: answered in %.2f s (timeout 1.5 s)" % took)
    dns.start()
    tap.is_(dnsq(S, "TXT", "vendor.test")[:3], ("ok", "NOERROR", ["v=spf1 -all"]),
            "knotd started again: answers")
    dns.pause()
    status, why, recs, took = dnsq(S, "TXT", "vendor.test", timeout_ms=1000)
    dns.resume()
    tap.is_((status, why), ("tempfail", "timeout"), "knotd frozen: tempfail, timeout")
    tap.ok(0.9 < took < 2.5, "knotd frozen: gave up after %.2f s (timeout 1 s)" % took)
    tap.is_(dnsq(S, "TXT", "vendor.test")[0], "ok", "knotd resumed: answers")

# 5. a zone knotd cannot load: loud failure with the log
with Stack("dns-lib-bad") as st:
    bad = Knot(st, {"broken.test": ["@ TXT \"unterminated"]})
    try:
        bad.start()
        tap.ok(False, "a broken zone raises StackError")
    except StackError as e:
        tap.ok("broken.test" in str(e) and "knotd" in str(e),
               "a broken zone raises StackError with knotd's log",
               diag=str(e)[-2000:])
    st.failed = False                  # expected: do not dump its logs

sys.exit(tap.done())
