#!/usr/bin/python3
"""proxyv2-shim in front of real Dovecot IMAP, behind real haproxy: the
docker-mailserver-on-Kubernetes setup of ../shared/seeds, where the
balancer sends PROXY v2 for IMAP as well as SMTP. Dovecot's imap-login
takes the re-emitted header (haproxy = yes, haproxy_trusted_networks =
the shim's address only); the client is imaplib, nobody here wrote it.

  - proxy-v2 and proxy-v1 modes: Dovecot logs the real client (rip=) and
    its port, never the shim's address; mail read over IMAP is the
    message delivered, byte for byte;
  - disable_plaintext_auth = yes: LOGIN on a plaintext connection through
    haproxy + shim is refused (the shim's loopback hop does not make it
    "secured"); the same login over TLS ended at haproxy
    (send-proxy-v2-ssl) succeeds in proxy-v2 mode, because the shim
    passes the balancer's SSL TLV on; proxy-v1 cannot carry it, so there
    it is refused (documented);
  - a client writing its own PROXY v2 header after haproxy's: Dovecot
    reads it as IMAP input, the logged client stays the real one;
  - a peer outside trusted= sending a header claiming another client:
    closed by the shim, Dovecot logs no such client;
  - haproxy (its connections come from 127.0.0.4, the shim's trusted=)
    health-checking both listeners with headers (v2: LOCAL, closed by
    the shim; v1: haproxy's own address): Dovecot never logs the shim's
    own address 127.0.0.1 as a client, in any test of this file.
"""

import imaplib
import os
import re
import socket
import ssl
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import build_path, tap, wait_for  # noqa: E402
from mxwebhook import lmtp_send  # noqa: E402

SHIM = build_path("proxyv2-shim", "proxyv2-shim")
USER, PASSWORD = "alice@mxkit.test", "imap-test-pw"
SIG = b"\r\n\r\n\x00\r\nQUIT\n"

SHIM_CONF = """\
header_timeout = 2s
log_rejects_per_second = 1000
xclient_name_lookup = no
listener = 127.0.0.1:{shim-v2} backend=127.0.0.3:{imap-v2} mode=proxy-v2 trusted=127.0.0.4
listener = 127.0.0.1:{shim-v1} backend=127.0.0.3:{imap-v1} mode=proxy-v1 trusted=127.0.0.4
"""

HAPROXY = """
frontend fe_ready
    bind 127.0.0.1:{port:hp-ready}
    tcp-request connection reject
frontend fe_v2
    bind 127.0.0.1:{port:hp-v2}
    default_backend be_v2
backend be_v2
    server s 127.0.0.1:{port:shim-v2} send-proxy-v2 source 127.0.0.4
frontend fe_v1
    bind 127.0.0.1:{port:hp-v1}
    default_backend be_v1
backend be_v1
    server s 127.0.0.1:{port:shim-v1} send-proxy source 127.0.0.4
frontend fe_tls_v2
    bind 127.0.0.1:{port:hp-tls-v2} ssl crt {dir}/etc/haproxy.pem
    default_backend be_tls_v2
backend be_tls_v2
    server s 127.0.0.1:{port:shim-v2} send-proxy-v2-ssl source 127.0.0.4
frontend fe_tls_v1
    bind 127.0.0.1:{port:hp-tls-v1} ssl crt {dir}/etc/haproxy.pem
    default_backend be_tls_v1
backend be_tls_v1
    server s 127.0.0.1:{port:shim-v1} send-proxy source 127.0.0.4
backend be_check
    option log-health-checks
    server c2 127.0.0.1:{port:shim-v2} send-proxy-v2 source 127.0.0.4 check check-send-proxy inter 200ms
    server c1 127.0.0.1:{port:shim-v1} send-proxy source 127.0.0.4 check check-send-proxy inter 200ms
"""

DOVECOT_IMAP = """
protocols = lmtp imap
disable_plaintext_auth = yes
haproxy_trusted_networks = 127.0.0.1/32
haproxy_timeout = 3s
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = 0
  }}
  inet_listener imap-v2 {{
    address = 127.0.0.3
    port = {v2}
    haproxy = yes
  }}
  inet_listener imap-v1 {{
    address = 127.0.0.3
    port = {v1}
    haproxy = yes
  }}
}}
"""


class SourcedIMAP(imaplib.IMAP4):
    """imaplib's client, connecting from a chosen loopback address."""

    def __init__(self, port, source, ssl_context=None):
        self.source, self.ssl_context = source, ssl_context
        self.source_port = None
        super().__init__("127.0.0.1", port, timeout=15)

    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self.source, 0))
        self.source_port = sock.getsockname()[1]
        if self.ssl_context:
            sock = self.ssl_context.wrap_socket(sock, server_hostname="imap.mxkit.test")
        return sock


def client_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def login_lines(st, mark):
    return [line for line in st.read_log("dovecot")[mark:].splitlines()
            if "imap-login:" in line]


def attempt(st, port, source, tls=False):
    """LOGIN through a chain; (logged in?, server's answer, the client's
    port, Dovecot's imap-login lines of this attempt)."""
    mark = len(st.read_log("dovecot"))
    imap = SourcedIMAP(port, source, client_ctx() if tls else None)
    try:
        typ, data = imap.login(USER, PASSWORD)
        ok, answer = typ == "OK", data
    except imaplib.IMAP4.error as e:
        ok, answer = False, str(e)
    if ok:
        imap.logout()
    else:
        try:
            imap.shutdown()
        except OSError:
            pass
    wait_for(lambda: login_lines(st, mark), timeout=5)
    time.sleep(0.2)
    return ok, answer, imap.source_port, login_lines(st, mark)


def test_real_client(st, body):
    for mode, port in (("proxy-v2", st.port("hp-tls-v2")), ("proxy-v1", st.port("hp-v1"))):
        tls = port == st.port("hp-tls-v2")
        ok, answer, sport, lines = attempt(st, port, "127.0.0.2", tls=tls)
        if mode == "proxy-v1":
            tap.ok(not ok and any("rip=127.0.0.2" in line for line in lines),
                   "%s, plaintext: login refused, Dovecot names the real client" % mode,
                   diag=(answer, lines))
            continue
        tap.ok(ok, "%s over TLS at haproxy: logged in" % mode, diag=(answer, lines))
        tap.ok(any("Login: user=<%s>" % USER in line and "rip=127.0.0.2" in line
                   for line in lines),
               "%s: Dovecot's login line names the real client 127.0.0.2" % mode, diag=lines)
        tap.ok(not any("rip=127.0.0.1," in line for line in lines),
               "%s: never the shim's own address" % mode, diag=lines)
    imap = SourcedIMAP(st.port("hp-tls-v2"), "127.0.0.2", client_ctx())
    imap.login(USER, PASSWORD)
    imap.select("INBOX", readonly=True)
    typ, data = imap.search(None, "ALL")
    ids = data[0].split()
    typ, fetched = imap.fetch(ids[-1], "(BODY.PEEK[TEXT])") if ids else ("NO", [])
    imap.logout()
    got = fetched[0][1] if ids and isinstance(fetched[0], tuple) else None
    tap.is_(got, body, "the message read over IMAP through haproxy and the shim is the "
            "body delivered, byte for byte")


def test_plaintext(st):
    ok, answer, _, lines = attempt(st, st.port("hp-v2"), "127.0.0.2")
    tap.ok(not ok and ("PRIVACYREQUIRED" in answer or "Plaintext" in answer
                       or "LOGINDISABLED" in answer),
           "proxy-v2, plaintext: LOGIN refused under disable_plaintext_auth (the shim's "
           "hop is not TLS)", diag=(answer, lines))
    tap.ok(any("rip=127.0.0.2" in line for line in lines),
           "proxy-v2, plaintext: Dovecot names the real client", diag=lines)
    ok, answer, _, lines = attempt(st, st.port("hp-tls-v1"), "127.0.0.2", tls=True)
    tap.ok(not ok, "proxy-v1 over TLS at haproxy: v1 cannot say TLS, so LOGIN is refused "
           "(use proxy-v2 for TLS ended at the balancer)", diag=(answer, lines))


def test_header_in_stream(st):
    """After haproxy's header, the client writes its own PROXY v2 header
    claiming 192.0.2.66: it is IMAP input, not a second header."""
    forged = SIG + bytes([0x21, 0x11]) + struct.pack("!H", 12) + \
        socket.inet_aton("192.0.2.66") + socket.inet_aton("127.0.0.1") + struct.pack("!HH", 1, 143)
    mark = len(st.read_log("dovecot"))
    s = socket.create_connection(("127.0.0.1", st.port("hp-v2")), timeout=10,
                                 source_address=("127.0.0.2", 0))
    greeting = s.recv(4096)
    s.sendall(forged + b"a LOGOUT\r\n")
    rest = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            rest += chunk
    except OSError:
        pass
    s.close()
    time.sleep(0.5)
    log = st.read_log("dovecot")[mark:]
    tap.ok(greeting.startswith(b"* OK"), "a forged in-stream header: the greeting came first",
           diag=greeting)
    tap.ok("192.0.2.66" not in log and "192.0.2.66" not in rest.decode(errors="replace"),
           "the forged client 192.0.2.66 appears nowhere", diag=log[-2000:])


def test_untrusted_peer(st):
    """A peer outside trusted= (127.0.0.2) speaking to the shim directly
    with a valid header: closed, Dovecot sees nothing."""
    mark = len(st.read_log("dovecot"))
    head = SIG + bytes([0x21, 0x11]) + struct.pack("!H", 12) + \
        socket.inet_aton("192.0.2.77") + socket.inet_aton("127.0.0.1") + struct.pack("!HH", 1, 143)
    for port in (st.port("shim-v2"), st.port("shim-v1")):
        s = socket.create_connection(("127.0.0.1", port), timeout=5,
                                     source_address=("127.0.0.2", 0))
        s.sendall(head + b"a LOGIN x y\r\n")
        try:
            got = s.recv(4096)
        except OSError:
            got = b""
        s.close()
        tap.is_(got, b"", "untrusted peer on %d: closed without a byte from Dovecot" % port)
    time.sleep(0.5)
    tap.ok("192.0.2.77" not in st.read_log("dovecot")[mark:],
           "Dovecot never heard of the claimed client")


def test_health_checks(st):
    def checks():
        log = st.read_log("haproxy")
        return len(re.findall(r"Health check for server be_check/c[12] (succeeded|failed)",
                              log)) >= 2 or None
    wait_for(checks, timeout=10)
    time.sleep(1)
    tap.ok("client=LOCAL" in st.read_log("shim"),
           "haproxy's v2 health checks did send LOCAL headers (the case was exercised)")
    log = st.read_log("dovecot")
    tap.ok(not re.search(r"imap-login: .*rip=127\.0\.0\.1[,>]", log),
           "health checks and every connection of this file: Dovecot never logs the shim's "
           "own address 127.0.0.1 as a client", diag=[x for x in log.splitlines() if "rip=127.0.0.1" in x][:5])


def make_cert(st):
    pem = st.path("etc", "haproxy.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=imap.mxkit.test", "-keyout", pem + ".key", "-out", pem],
                   check=True, capture_output=True)
    with open(pem, "ab") as out, open(pem + ".key", "rb") as key:
        out.write(key.read())


with Stack("proxyv2-imap") as st:
    tap.stack = st
    for name in ("shim-v2", "shim-v1", "imap-v2", "imap-v1", "hp-v2", "hp-v1", "hp-tls-v2",
                 "hp-tls-v1", "hp-ready"):
        st.port(name)
    st.users[USER] = PASSWORD
    st.start_dovecot(extra=DOVECOT_IMAP.format(v2=st.port("imap-v2"), v1=st.port("imap-v1")))
    body = b"Invoice 42 attached.\r\n" + bytes(range(32, 127)) + b"\r\n"
    msg = (b"From: <billing@vendor.example>\r\nTo: <%s>\r\nSubject: imap test\r\n"
           b"Message-ID: <imap-test@vendor.example>\r\n\r\n" % USER.encode()) + body
    refused, _ = lmtp_send(st, [USER], msg)
    tap.is_(refused, {}, "a message delivered to %s over LMTP" % USER)
    conf = st.path("etc", "shim.conf")
    text = SHIM_CONF
    for key, value in st.ports.items():
        text = text.replace("{%s}" % key, str(value))
    with open(conf, "w") as f:
        f.write(text)
    check = subprocess.run([SHIM, "-t", "-c", conf], capture_output=True, text=True)
    tap.is_(check.returncode, 0, "proxyv2-shim -t accepts the configuration",
            diag=check.stdout + check.stderr)
    shim = st.start_daemon("shim", [SHIM, "-f", "-c", conf], port=st.port("shim-v2"))
    make_cert(st)
    # haproxy is waited for on a frontend of its own: a probe from
    # 127.0.0.1 through the IMAP chain would be a real client at the
    # shim's address and blur the check that Dovecot never logs it
    st.start_haproxy(HAPROXY.replace("{dir}", st.dir), wait_ports=[st.port("hp-ready")])
    test_real_client(st, body)
    test_plaintext(st)
    test_header_in_stream(st)
    test_untrusted_peer(st)
    test_health_checks(st)
    tap.ok(shim.poll() is None, "proxyv2-shim kept running")

sys.exit(tap.done())
