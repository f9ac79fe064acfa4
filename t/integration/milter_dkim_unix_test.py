#!/usr/bin/python3
"""milter-dkim spoken to directly over the milter protocol, and through
Postfix on a UNIX socket (where it asks Postfix for no replies to headers
and body chunks):

  - acceptance 1, direct: t/bench/milter_load plays the MTA; a message
    from an authenticated user (svc-billing, from an outside address) is
    signed with RSA-2048 and Ed25519 in one pass and dkimpy verifies
    both, on a UNIX socket and on TCP; the tables are OpenDKIM's format;
  - an unauthenticated outside client is not signed; sender_binding
    refuses svc-billing as staff@plana.solutions;
  - more than 8 MB of headers, told only at end-of-headers because the
    headers get no reply: rejected (552 5.3.4: a retry would fail the
    same way), and the next message signs;
  - Postfix -> unix socket: a submitted message is delivered with two
    signatures that dkimpy verifies; 50 messages in one session all
    signed (the no-reply steps keep the protocol in step);
  - a second start with the same socket (helper-119): it exits saying a
    process answers on it, and the first one's socket still answers
    (before, the second removed the live socket and then died on its
    pid file, and Postfix deferred every message). A stale socket (no
    one answers) is still replaced.
"""

import os
import subprocess
import sys
import uuid

import dkim

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack, wait_port  # noqa: E402
from mxtest import build_path, tap, wait_for  # noqa: E402
import mxdkim  # noqa: E402

LOAD = build_path("t", "bench", "milter_load")
CONF = """\
socket = {socket}
socket_umask = 000
key_table = {dir}/etc/key.table
signing_table = refile:{dir}/etc/signing.table
sender_binding = {dir}/etc/sender_binding
dns_test_file = {dir}/etc/dns.txt
"""


def load(spec, *args):
    res = subprocess.run([LOAD, "-s", spec, "-c", "1", "-n", "1"] + list(args),
                         capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        return {"error": res.stderr.strip()}
    return {k: v for k, v in (kv.split("=") for kv in res.stdout.split())}


def verify_all(path, dns):
    with open(path, "rb") as f:
        message = f.read()
    n = message.split(b"\r\n\r\n")[0].count(b"DKIM-Signature:")
    d = dkim.DKIM(message)
    return n, [d.verify(idx=i, dnsfunc=dns.dnsfunc) for i in range(n)]


def start(st, name, socket_spec):
    conf = st.path("etc", name + ".conf")
    with open(conf, "w") as f:
        f.write(CONF.replace("{socket}", socket_spec).replace("{dir}", st.dir))
    proc = st.start_daemon(name, [mxdkim.MILTER, "-f", "-c", conf])
    ready = (wait_port(int(socket_spec.split(":")[1].split("@")[0]))
             if socket_spec.startswith("inet:")
             else wait_for(lambda: os.path.exists(socket_spec[5:]), timeout=10))
    if not ready or proc.poll() is not None:
        raise SystemExit("%s did not start:\n%s" % (name, st.read_log(name)))
    return proc


def test_second_start(st, dns, sock):
    conf = st.path("etc", "milter-unix.conf")
    second = subprocess.Popen([mxdkim.MILTER, "-f", "-c", conf], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        _, err = second.communicate(timeout=30)
    except subprocess.TimeoutExpired:       # it took the socket over and serves
        second.kill()
        _, err = second.communicate()
        err = "still running after 30 s (it took the socket over)\n" + err
    tap.ok(second.returncode not in (0, None) and "a process answers on it" in err,
           "a second start on the same socket exits and says why",
           diag="exit %s: %s" % (second.returncode, err[-300:]))
    r = load("unix:" + sock, "-a", "svc-billing", "-A", "192.0.2.7", "-f",
             "noreply@planapulse.ai", "-w", st.path("after-second.eml"))
    tap.ok("error" not in r and verify_all(st.path("after-second.eml"), dns)[1] == [True, True],
           "the first one's socket still signs", diag=str(r))
    stale = st.path("stale.sock")
    import socket
    s = socket.socket(socket.AF_UNIX)
    s.bind(stale)
    s.close()                                   # a socket file no one answers on
    proc = start(st, "milter-stale", "unix:" + stale)
    answered = wait_for(lambda: "error" not in load("unix:" + stale, "-a", "svc-billing",
                                                    "-A", "192.0.2.7", "-f",
                                                    "noreply@planapulse.ai"), timeout=10)
    tap.ok(answered, "a stale socket is replaced")
    proc.terminate()


def test_direct(st, dns, spec, label):
    out = st.path("direct-%s.eml" % label)
    r = load(spec, "-a", "svc-billing", "-A", "192.0.2.7", "-f", "noreply@planapulse.ai",
             "-w", out)
    tap.is_(r.get("signed"), "1", "%s: svc-billing's message signed over the milter protocol"
            % label, diag=str(r))
    n, results = verify_all(out, dns) if os.path.exists(out) else (0, [])
    tap.is_(n, 2, "%s: two DKIM-Signature headers (RSA-2048 and Ed25519)" % label)
    tap.ok(n == 2 and all(results), "%s: dkimpy verifies both: %s" % (label, results))
    with open(out, "rb") as f:
        head = f.read().split(b"\r\n\r\n")[0]
    tap.ok(b"a=rsa-sha256" in head and b"a=ed25519-sha256" in head,
           "%s: one rsa-sha256 and one ed25519-sha256 signature" % label)


def test_policy(st, spec):
    r = load(spec, "-A", "192.0.2.7", "-f", "noreply@planapulse.ai")
    tap.is_(r.get("signed"), "0", "unauthenticated outside client: not signed", diag=str(r))
    r = load(spec, "-a", "svc-billing", "-A", "192.0.2.7", "-f", "staff@plana.solutions")
    tap.is_(r.get("rejected"), "1", "sender_binding: svc-billing as staff@plana.solutions "
            "refused over the milter protocol", diag=str(r))
    r = load(spec, "-f", "noreply@planapulse.ai", "-X", "9000000")
    tap.is_(r.get("rejected"), "1", "9 MB of headers with no replies: rejected at "
            "end-of-headers", diag=str(r))
    tap.ok("message header larger than 8 MB" in st.read_log("milter-unix"),
           "the oversized header is logged")
    r = load(spec, "-f", "noreply@planapulse.ai")
    tap.is_(r.get("signed"), "1", "the next message is signed", diag=str(r))


def test_postfix(st, dns, sock):
    port = st.start_postfix(smtpd={"smtpd_milters": "unix:" + sock,
                                   "milter_default_action": "tempfail"})
    token = uuid.uuid4().hex
    res = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % port,
                          "--from", "noreply@planapulse.ai", "--to", "cust@example.net",
                          "--header", "From: Billing <noreply@planapulse.ai>",
                          "--header", "Subject: unix socket %s" % token,
                          "--body", "Your invoice %s.\n" % token],
                         capture_output=True, text=True, timeout=60)
    tap.is_(res.returncode, 0, "swaks submits through Postfix with the milter on a UNIX "
            "socket", diag=res.stdout[-800:])
    found = wait_for(lambda: [m for m in st.sink_messages() if token in m], timeout=20)
    message = mxdkim.crlf(mxdkim.strip_sink_headers(found[0])) if found else b""
    d = dkim.DKIM(message)
    n = message.split(b"\r\n\r\n")[0].count(b"DKIM-Signature:")
    results = [d.verify(idx=i, dnsfunc=dns.dnsfunc) for i in range(n)]
    tap.ok(n == 2 and all(results), "delivered with 2 signatures, dkimpy verifies: %s"
           % results)
    res = subprocess.run(["smtp-source", "-m", "50", "-s", "1", "-l", "2048",
                          "-f", "noreply@planapulse.ai", "-t", "many@example.net",
                          "127.0.0.1:%d" % port], capture_output=True, text=True, timeout=300)
    tap.is_(res.returncode, 0, "smtp-source: 50 messages in one session", diag=res.stderr)
    got = wait_for(lambda: len([m for m in st.sink_messages() if "many@example.net" in m])
                   >= 50, timeout=60)
    signed = [m for m in st.sink_messages()
              if "many@example.net" in m and "DKIM-Signature:" in m]
    tap.ok(got and len(signed) == 50, "all 50 delivered and signed (%d)" % len(signed))


with Stack("milter-dkim-unix") as st:
    tap.stack = st
    st.start_sink()
    dns = mxdkim.Dns(st.path("etc", "dns.txt"))
    mxdkim.keygen(st, dns, "planapulse.ai", "rsa2026", "rsa", 2048)
    mxdkim.keygen(st, dns, "planapulse.ai", "ed2026", "ed25519")
    with open(st.path("etc", "key.table"), "w") as f:       # as written for opendkim
        f.write("rsa planapulse.ai:rsa2026:%s/keys/rsa2026.private\n"
                "ed  %%:ed2026:%s/keys/ed2026.private\n" % (st.dir, st.dir))
    with open(st.path("etc", "signing.table"), "w") as f:
        f.write("*@planapulse.ai rsa,ed\n")
    with open(st.path("etc", "sender_binding"), "w") as f:
        f.write("svc-billing  *@planapulse.ai\n")
    sock = st.path("milter.sock")
    proc = start(st, "milter-unix", "unix:" + sock)
    start(st, "milter-inet", "inet:%d@127.0.0.1" % st.port("milter-inet"))
    test_direct(st, dns, "unix:" + sock, "unix socket")
    test_direct(st, dns, "inet:%d@127.0.0.1" % st.port("milter-inet"), "TCP socket")
    test_policy(st, "unix:" + sock)
    test_postfix(st, dns, sock)
    test_second_start(st, dns, sock)
    tap.ok(proc.poll() is None, "milter-dkim kept serving")

sys.exit(tap.done())
