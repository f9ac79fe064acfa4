#!/usr/bin/python3
"""proxyv2-shim mode=transparent (issue 6, acceptance 1), in two network
namespaces this test creates and removes:

    client ns  192.0.2.2 / 2001:db8:5::2  --veth--  192.0.2.1 / 2001:db8:5::1  shim ns
                                                    haproxy send-proxy-v2
                                                      -> shim (127.0.0.1, transparent)
                                                      -> backend 127.0.0.1 / ::1

The backend (a plain Python server that answers with getpeername()) must
see the client's own address, not haproxy's or the shim's. Return traffic
comes back through the policy routing go-mmproxy documents:
    ip rule add from 127.0.0.1/8 iif lo table 123
    ip route add local 0.0.0.0/0 dev lo table 123
(and the same for ::1 with ip -6).

A trusted balancer in the client namespace (another host) that names a
loopback or unspecified client: transparent mode closes it, xclient mode
sends XCLIENT ADDR=[UNAVAILABLE] (test_far_balancer).
"""

import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import build_path, tap, wait_for  # noqa: E402

SHIM = build_path("proxyv2-shim", "proxyv2-shim")
NS_S, NS_C = "mxtp-s-%d" % os.getpid(), "mxtp-c-%d" % os.getpid()
VETH_S, VETH_C = "mxs%d" % (os.getpid() % 100000), "mxc%d" % (os.getpid() % 100000)
PEER = r"""
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(16)
while True:
    c, a = s.accept(); c.sendall(("peer=%s port=%d\n" % (a[0], a[1])).encode()); c.close()
"""
RAW = r"""
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
sport = int(sys.argv[3]) if len(sys.argv) > 3 else 40000
body = (socket.inet_pton(socket.AF_INET6, sys.argv[2]) + socket.inet_pton(socket.AF_INET6, "::1")
        + struct.pack("!HH", sport, 993))
s.sendall(b"\r\n\r\n\x00\r\nQUIT\n\x21\x21" + struct.pack("!H", len(body)) + body)
print(s.recv(200).decode().strip())
"""
BALANCER = r"""
import socket, struct, sys
# a balancer on another host (192.0.2.2) naming the client argv[3] (v1 or v2)
s = socket.create_connection(("192.0.2.1", int(sys.argv[1])), timeout=10)
src = sys.argv[3]
if sys.argv[2] == "v1":
    s.sendall(("PROXY TCP4 %s 192.0.2.1 40000 25\r\n" % src).encode())
elif ":" in src:
    body = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, "::1")
    body += struct.pack("!HH", 40000, 25)
    s.sendall(b"\r\n\r\n\x00\r\nQUIT\n\x21\x21" + struct.pack("!H", len(body)) + body)
else:
    body = socket.inet_aton(src) + socket.inet_aton("192.0.2.1") + struct.pack("!HH", 40000, 25)
    s.sendall(b"\r\n\r\n\x00\r\nQUIT\n\x21\x11" + struct.pack("!H", len(body)) + body)
try:
    print(s.recv(200).decode().strip())
except OSError as e:
    print("error", e)
"""
# What the shim sends an SMTP backend in xclient mode, written down (the
# XCLIENT line each connection brought): real Postfix cannot run in the
# namespace; what it does with [UNAVAILABLE] is proxyv2_hostile_test's.
SMTP_RECORDER = r"""
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16)
def serve(c):
    f = c.makefile("rb")
    c.sendall(b"220 recorder ESMTP\r\n")
    for line in f:
        if line.upper().startswith(b"EHLO"):
            c.sendall(b"250-recorder\r\n250 XCLIENT ADDR PORT NAME REVERSE_NAME\r\n")
        elif line.upper().startswith(b"XCLIENT"):
            print("xclient:", line.decode().strip(), flush=True)
            c.sendall(b"220 recorder after xclient\r\n")
            break
    c.close()
while True:
    c, a = s.accept(); threading.Thread(target=serve, args=(c,)).start()
"""
CLIENT = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
print(s.getsockname()[0], s.recv(200).decode().strip())
"""


def sh(*argv):
    res = subprocess.run(list(argv), capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit("%s: %s" % (" ".join(argv), res.stderr.strip()))


def in_ns(ns, *argv):
    return ["ip", "netns", "exec", ns] + list(argv)


def setup_namespaces():
    for ns in (NS_S, NS_C):
        sh("ip", "netns", "add", ns)
        sh(*in_ns(ns, "ip", "link", "set", "lo", "up"))
    sh("ip", "link", "add", VETH_S, "netns", NS_S, "type", "veth", "peer", "name", VETH_C,
       "netns", NS_C)
    for ns, dev, v4, v6 in ((NS_S, VETH_S, "192.0.2.1/24", "2001:db8:5::1/64"),
                            (NS_C, VETH_C, "192.0.2.2/24", "2001:db8:5::2/64")):
        sh(*in_ns(ns, "ip", "addr", "add", v4, "dev", dev))
        sh(*in_ns(ns, "ip", "-6", "addr", "add", v6, "dev", dev, "nodad"))
        sh(*in_ns(ns, "ip", "link", "set", dev, "up"))
    # The documented lines: replies from the local backend to a foreign
    # client address are delivered locally, to the shim's spoofed socket.
    sh(*in_ns(NS_S, "ip", "rule", "add", "from", "127.0.0.1/8", "iif", "lo", "table", "123"))
    sh(*in_ns(NS_S, "ip", "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "123"))
    sh(*in_ns(NS_S, "ip", "-6", "rule", "add", "from", "::1/128", "iif", "lo", "table", "123"))
    sh(*in_ns(NS_S, "ip", "-6", "route", "add", "local", "::/0", "dev", "lo", "table", "123"))


def teardown_namespaces():
    for ns in (NS_S, NS_C):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def client(host, port):
    res = subprocess.run(in_ns(NS_C, "/usr/bin/python3", "-c", CLIENT, host, str(port)),
                         capture_output=True, text=True, timeout=30)
    return res.stdout.strip() + res.stderr.strip()[-300:]


def balancer(port, form, src):
    res = subprocess.run(in_ns(NS_C, "/usr/bin/python3", "-c", BALANCER, str(port), form, src),
                         capture_output=True, text=True, timeout=30)
    return (res.stdout + res.stderr[-300:]).strip()


def test_far_balancer(st, ports):
    """A trusted balancer on another host names a loopback or unspecified
    client (attacker of 2026-12-02): its loopback is not ours, and
    0.0.0.0 is no client. Transparent mode closes the connection (bound
    to 127.0.0.1 or 0.0.0.0 it would come from this host); xclient mode
    says ADDR=[UNAVAILABLE] (Postfix would have put 127.0.0.1 in
    mynetworks). A real client's address still goes through both."""
    for form, src in (("v2", "127.0.0.1"), ("v1", "127.0.0.1"), ("v2", "127.9.9.9"),
                      ("v2", "::ffff:127.0.0.1"), ("v2", "0.0.0.0"), ("v1", "0.0.0.0"),
                      # multicast and broadcast: bound to one, the kernel
                      # connected from 127.0.0.1 (attacker of 2026-12-03)
                      ("v2", "224.0.0.1"), ("v1", "239.1.2.3"), ("v2", "255.255.255.255"),
                      ("v2", "ff0e::1")):
        out = balancer(ports["far-t"], form, src)
        tap.is_(out, "", "transparent, a balancer on another host, %s header claiming %s: "
                "closed, the backend never reached" % (form, src))
        mark = st.read_log("smtp").count("xclient:")
        out = balancer(ports["far-x"], form, src)
        tap.ok(out.startswith("220 recorder after xclient") and wait_for(
            lambda: st.read_log("smtp").count("xclient:") > mark, timeout=5),
            "xclient, %s header claiming %s: the client is served (%r)" % (form, src, out))
        last = [l for l in st.read_log("smtp").splitlines() if "xclient:" in l][-1:]
        tap.ok(last and "ADDR=[UNAVAILABLE]" in last[0] and "127.0.0.1" not in last[0]
               and "0.0.0.0" not in last[0],
               "xclient, %s header claiming %s: XCLIENT ADDR=[UNAVAILABLE], never the "
               "claimed address" % (form, src), diag=repr(last))
    log = st.read_log("shim")
    tap.ok("balancer is not on this host" in log and "unspecified" in log
           and "127.0.0.1:40000(not-a-client)" in log and "224.0.0.1:40000(not-a-client)" in log,
           "the shim's log names the claim and why it is no client",
           diag="\n".join(log.splitlines()[-6:]))
    # a subnet's broadcast address: no header check can know it is one;
    # the kernel binds it and connects from the route's source (127.0.0.1)
    out = balancer(ports["far-t"], "v2", "192.0.2.255")
    tap.is_(out, "", "transparent, a header claiming the subnet's broadcast 192.0.2.255: "
            "closed, the backend never sees the connection come from this host")
    tap.ok(wait_for(lambda: "does not come from the client's address" in st.read_log("shim"),
                    timeout=5), "and the shim says why", diag=st.read_log("shim")[-800:])
    out = balancer(ports["far-t"], "v2", "192.0.2.77")
    tap.ok(out.startswith("peer=192.0.2.77 "), "control: transparent, a real client "
           "192.0.2.77 from that balancer: the backend sees it (%r)" % out)
    out = balancer(ports["far-x"], "v2", "192.0.2.77")
    last = [l for l in st.read_log("smtp").splitlines() if "xclient:" in l][-1:]
    tap.ok(out.startswith("220 ") and last and "ADDR=192.0.2.77" in last[0],
           "control: xclient, a real client: XCLIENT ADDR=192.0.2.77", diag=repr(last))


HAPROXY = """
frontend fe4
    bind 192.0.2.1:{port:hp4}
    default_backend be4
backend be4
    server shim 127.0.0.1:{port:shim4} send-proxy-v2
frontend fe6
    bind [2001:db8:5::1]:{port:hp6}
    default_backend be6
backend be6
    server shim 127.0.0.1:{port:shim6} send-proxy-v2
"""

try:
    setup_namespaces()
    with Stack("proxyv2-transparent") as st:
        tap.stack = st
        ports = {n: st.port(n) for n in ("hp4", "hp6", "shim4", "shim6", "peer4", "peer6",
                                         "far-t", "far-x", "smtp")}
        conf = st.path("etc", "shim.conf")
        with open(conf, "w") as f:
            # every refusal's line is asserted: none may fall under the rate limit
            f.write("log_rejects_per_second = 100000\n")
            f.write("listener = 127.0.0.1:%d backend=127.0.0.1:%d mode=transparent "
                    "trusted=127.0.0.0/8\n" % (ports["shim4"], ports["peer4"]))
            f.write("listener = 127.0.0.1:%d backend=[::1]:%d mode=transparent "
                    "trusted=127.0.0.0/8\n" % (ports["shim6"], ports["peer6"]))
            # a balancer on another host (the client namespace's 192.0.2.2)
            f.write("listener = 192.0.2.1:%d backend=127.0.0.1:%d mode=transparent "
                    "trusted=192.0.2.2\n" % (ports["far-t"], ports["peer4"]))
            f.write("listener = 192.0.2.1:%d backend=127.0.0.1:%d mode=xclient "
                    "trusted=192.0.2.2\n" % (ports["far-x"], ports["smtp"]))
        st.start_daemon("peer4", in_ns(NS_S, "/usr/bin/python3", "-c", PEER, "127.0.0.1",
                                       str(ports["peer4"])))
        st.start_daemon("peer6", in_ns(NS_S, "/usr/bin/python3", "-c", PEER, "::1",
                                       str(ports["peer6"])))
        st.start_daemon("smtp", in_ns(NS_S, "/usr/bin/python3", "-u", "-c", SMTP_RECORDER,
                                      str(ports["smtp"])))
        shim = st.start_daemon("shim", in_ns(NS_S, SHIM, "-f", "-c", conf))
        hap_conf = HAPROXY
        for name, port in ports.items():
            hap_conf = hap_conf.replace("{port:%s}" % name, str(port))
        with open(st.path("etc", "haproxy-ns.cfg"), "w") as f:
            f.write("global\n    log stderr format short local0\ndefaults\n    mode tcp\n"
                    "    log global\n    option tcplog\n    timeout connect 5s\n"
                    "    timeout client 30s\n    timeout server 30s\n" + hap_conf)
        st.start_daemon("haproxy", in_ns(NS_S, "haproxy", "-db", "-f",
                                         st.path("etc", "haproxy-ns.cfg")))
        tap.ok(wait_for(lambda: "started: 4 listeners" in st.read_log("shim"), timeout=10),
               "shim started inside the namespace")
        wait_for(lambda: "peer=" in client("192.0.2.1", ports["hp4"]), timeout=10)
        out = client("192.0.2.1", ports["hp4"])
        tap.ok("peer=192.0.2.2 " in out, "IPv4: the backend sees the client's own address: %s"
               % out)
        out = client("2001:db8:5::1", ports["hp6"])
        tap.ok("peer=2001:db8:5::2 " in out,
               "IPv6: the backend sees the client's own address: %s" % out)
        res = subprocess.run(in_ns(NS_S, "/usr/bin/python3", "-c", RAW, str(ports["shim4"]),
                                   "::ffff:192.0.2.2"), capture_output=True, text=True,
                             timeout=30)
        tap.ok(res.stdout.startswith("peer=192.0.2.2 port="),
               "a v4-mapped client (::ffff:192.0.2.2) to an IPv4 backend: connects from "
               "192.0.2.2: %s" % (res.stdout + res.stderr[-300:]).strip())
        res = subprocess.run(in_ns(NS_S, "/usr/bin/python3", "-c", RAW, str(ports["shim4"]),
                                   "2001:db8:5::2"), capture_output=True, text=True,
                             timeout=30)
        tap.ok(res.stdout.strip() == "" and wait_for(
            lambda: "client address family differs from the backend's" in st.read_log("shim"),
            timeout=5),
            "an IPv6 client to an IPv4 backend: closed, never from the shim's own address (%r)"
            % res.stdout.strip())
        # a client port the shim cannot bind (here: its own listener's, on
        # this host's address): the backend connection takes another port,
        # and the log still names the client's (outside attacker of
        # 2026-12-03: it logged the port as 0)
        res = subprocess.run(in_ns(NS_S, "/usr/bin/python3", "-c", RAW, str(ports["shim4"]),
                                   "::ffff:192.0.2.1", str(ports["far-t"])),
                             capture_output=True, text=True, timeout=30)
        claimed = "client=192.0.2.1:%d " % ports["far-t"]
        tap.ok(res.stdout.startswith("peer=192.0.2.1 ") and wait_for(
            lambda: claimed in st.read_log("shim"), timeout=5)
            and "client=192.0.2.1:0 " not in st.read_log("shim"),
            "a client port already bound here: relayed from another port, logged as the "
            "client's own (%r)" % res.stdout.strip(), diag=st.read_log("shim")[-600:])
        test_far_balancer(st, ports)
        log = st.read_log("shim")
        tap.ok("client=192.0.2.2:" in log and "mode=transparent" in log,
               "the shim logged the client and the mode")
        tap.ok(shim.poll() is None, "the shim is still running")
finally:
    teardown_namespaces()
sys.exit(tap.done())
