#!/usr/bin/python3
"""proxyv2-shim's re-emit modes and IPv4-mapped clients (helper-123): a
dual-stack balancer (HAProxy `bind :::25 v4v6`) names its IPv4 clients
::ffff:a.b.c.d in a TCP6 header. The re-emit modes passed that on as
IPv6, and an IPv4-only Postfix (`inet_protocols = ipv4`, with
`smtpd_upstream_proxy_protocol = haproxy`) answered every such client
421 4.3.0 ("Postfix IPv6 support is disabled"): the MX took no IPv4
mail. Now every mode hands the client on as the IPv4 address it is.

Real HAProxy bound to ::ffff:127.0.0.1 (an IPv6 socket that IPv4
clients reach: its header is TCP6 with both addresses mapped) ->
shim mode=proxy-v2 -> real Postfix (IPv4 only) -> smtp-sink; and
hand-built headers (v2 with a mapped destination and with a native IPv6
one, v1 TCP6) to proxy-v2 and proxy-v1 listeners: each message
delivered, Postfix logging the IPv4 client; a plain IPv6 client is
still passed on as IPv6 (and refused by that Postfix, as it must be).
"""

import os
import re
import smtplib
import socket
import sys
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxproxy import v2, inet6  # noqa: E402
from mxstack import Stack  # noqa: E402
from mxtest import build_path, tap, wait_for  # noqa: E402

SHIM = build_path("proxyv2-shim", "proxyv2-shim")

CONF = """\
header_timeout = 5s
listener = 127.0.0.1:{shim-v2} backend=127.0.0.1:{postfix-smtp} mode=proxy-v2 trusted=127.0.0.0/8
listener = 127.0.0.1:{shim-v1} backend=127.0.0.1:{postfix-smtp} mode=proxy-v1 trusted=127.0.0.0/8
"""

HAPROXY = """
frontend fe_mapped
    bind ipv6@::ffff:127.0.0.1:{port:hp-mapped}
    default_backend be_shim
backend be_shim
    server shim 127.0.0.1:{port:shim-v2} send-proxy-v2 proxy-v2-options crc32c
"""


class HeaderSMTP(smtplib.SMTP):
    """smtplib, sending a PROXY header first."""
    header = b""

    def _get_socket(self, host, port, timeout):
        s = socket.create_connection((host, port), timeout)
        s.sendall(self.header)
        return s


def send(port, header, token):
    HeaderSMTP.header = header
    msg = ("From: billing@vendor.test\r\nTo: x@remote.test\r\nSubject: %s\r\n\r\nbill\r\n"
           % token)
    try:
        with HeaderSMTP("127.0.0.1", port, timeout=15) as c:
            c.sendmail("billing@vendor.test", ["x@remote.test"], msg)
            return "sent"
    except smtplib.SMTPResponseException as e:
        return "%d %s" % (e.smtp_code, e.smtp_error.decode(errors="replace"))
    except (smtplib.SMTPException, OSError) as e:
        return "error %r" % e


def delivered(st, token):
    return wait_for(lambda: any(token in m for m in st.sink_messages()), timeout=15)


def client_logged(st, addr):
    return wait_for(lambda: re.search(r": client=\S+\[%s\]" % re.escape(addr),
                                      st.read_log("postfix")), timeout=10)


with Stack("proxyv2-mapped") as st:
    tap.stack = st
    st.start_sink()
    for name in ("shim-v2", "shim-v1", "hp-mapped"):
        st.port(name)
    st.start_postfix(main={"inet_protocols": "ipv4", "mynetworks": "127.0.0.0/8",
                           "relay_domains": "remote.test"},
                     smtpd={"smtpd_upstream_proxy_protocol": "haproxy"})
    conf = st.path("etc", "proxyv2-shim.conf")
    text = CONF
    for name, port in st.ports.items():
        text = text.replace("{%s}" % name, str(port))
    with open(conf, "w") as f:
        f.write(text)
    st.start_daemon("shim", [SHIM, "-f", "-c", conf], port=st.port("shim-v2"))
    st.start_haproxy(HAPROXY, wait_ports=[st.port("hp-mapped")])

    token = uuid.uuid4().hex
    got = send(st.port("hp-mapped"), b"", token)
    tap.is_(got, "sent", "HAProxy on an IPv6 socket (TCP6, ::ffff:127.0.0.1) -> proxy-v2 -> "
            "IPv4-only Postfix: accepted")
    tap.ok(delivered(st, token), "and delivered")
    tap.ok(client_logged(st, "127.0.0.1"), "Postfix logs the IPv4 client 127.0.0.1",
           diag=st.read_log("postfix")[-800:])

    for port, label, header, client in [
            ("shim-v2", "v2 TCP6, both addresses mapped", v2(inet6(
                "::ffff:192.0.2.7", "::ffff:10.0.20.5"), fam=0x21), "192.0.2.7"),
            ("shim-v2", "v2 TCP6, mapped client, native IPv6 destination", v2(inet6(
                "::ffff:192.0.2.8", "2001:db8::1"), fam=0x21), "192.0.2.8"),
            ("shim-v1", "v2 TCP6 mapped, re-emitted as v1", v2(inet6(
                "::ffff:192.0.2.9", "::ffff:10.0.20.5"), fam=0x21), "192.0.2.9")]:
        token = uuid.uuid4().hex
        got = send(st.port(port), header, token)
        tap.is_(got, "sent", "%s -> %s -> IPv4-only Postfix: accepted" % (label, port))
        tap.ok(delivered(st, token) and client_logged(st, client),
               "%s: delivered, Postfix logs %s" % (label, client),
               diag=st.read_log("postfix")[-600:])
    token = uuid.uuid4().hex
    got = send(st.port("shim-v2"), v2(inet6("2001:db8::7", "2001:db8::1"), fam=0x21), token)
    tap.ok(got.startswith("421"),
           "a real IPv6 client stays IPv6: that Postfix refuses it (%s)" % got[:60])

sys.exit(tap.done())
