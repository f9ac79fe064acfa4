#!/usr/bin/python3
"""milter-dkim's no-reply protocol flags (issue 17: fewer round trips per
message), on a UNIX socket and on TCP, through real Postfix:

  - negotiation, asked by a raw milter client offering every flag: the
    protocol mask is exactly what milter.c claims (UNIX: no reply at
    connect, HELO, MAIL, headers and body chunks, RCPT, DATA and unknown
    commands not sent; TCP: the same but DATA answers) and real Postfix
    logs the same event mask (debug_peer_list);
  - refusals still come where the decision is made, with the right code,
    in one SMTP session: a signed header line past 998 octets at end of
    header (550 5.6.0), a body line past 998 octets at end of message
    (550 5.6.0), more than 1000 forged Authentication-Results at end of
    header (550 5.7.1); the next message in the same session is signed;
  - every header reaches the milter when headers get no reply: a message
    with 305 headers, 20 of them forged Authentication-Results spread
    among them, arrives with exactly those 20 removed, the other 280 in
    order, and a signature dkimpy verifies; inbound mail (XCLIENT from an
    outside address) is verified and gets our one A-R;
  - 30 messages over 3 concurrent sessions: all signed (the protocol stays
    in step with replies skipped).
"""

import os
import re
import smtplib
import socket
import struct
import subprocess
import sys
import uuid

import dkim

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack, wait_port  # noqa: E402
from mxtest import tap, wait_for  # noqa: E402
import mxdkim  # noqa: E402

CONF = """\
socket = {socket}
socket_umask = 000
key_table = {dir}/etc/key.table
signing_table = refile:{dir}/etc/signing.table
dns_test_file = {dir}/etc/dns.txt
authserv_id = mx.mxkit.test
"""

# libmilter's protocol bits (mfdef.h)
SMFIP = {"NOCONNECT": 0x1, "NOHELO": 0x2, "NOMAIL": 0x4, "NORCPT": 0x8, "NOBODY": 0x10,
         "NOHDRS": 0x20, "NOEOH": 0x40, "NR_HDR": 0x80, "NOUNKNOWN": 0x100,
         "NODATA": 0x200, "SKIP": 0x400, "RCPT_REJ": 0x800, "NR_CONN": 0x1000,
         "NR_HELO": 0x2000, "NR_MAIL": 0x4000, "NR_RCPT": 0x8000, "NR_DATA": 0x10000,
         "NR_UNKN": 0x20000, "NR_EOH": 0x40000, "NR_BODY": 0x80000,
         "HDR_LEADSPC": 0x100000}
TCP_FLAGS = {"NR_CONN", "NR_HELO", "NR_MAIL", "NORCPT", "NOUNKNOWN", "NR_HDR", "NR_BODY",
             "HDR_LEADSPC"}
UNIX_FLAGS = TCP_FLAGS | {"NODATA"}


def names(mask):
    return {n for n, bit in SMFIP.items() if mask & bit}


NEGOTIATED_LISTS = {}


def negotiate(spec):
    """OPTNEG as an MTA offering everything: (actions, protocol) answered."""
    if spec.startswith("unix:"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(spec[5:])
    else:
        s = socket.create_connection(("127.0.0.1", int(spec[5:].split("@")[0])))
    s.settimeout(10)
    body = b"O" + struct.pack(">III", 6, 0x1ff, 0x1fffff)
    s.sendall(struct.pack(">I", len(body)) + body)
    data = b""
    while len(data) < 4 or len(data) < 4 + struct.unpack(">I", data[:4])[0]:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    if len(data) < 17 or data[4:5] != b"O":
        return None, None
    _, actions, protocol = struct.unpack(">III", data[5:17])
    NEGOTIATED_LISTS[spec] = data[17:]
    return actions, protocol


def start(st, name, spec):
    conf = st.path("etc", name + ".conf")
    with open(conf, "w") as f:
        f.write(CONF.replace("{socket}", spec).replace("{dir}", st.dir))
    proc = st.start_daemon(name, [mxdkim.MILTER, "-f", "-c", conf])
    ready = (wait_port(int(spec.split(":")[1].split("@")[0])) if spec.startswith("inet:")
             else wait_for(lambda: os.path.exists(spec[5:]), timeout=10))
    if not ready or proc.poll() is not None:
        raise SystemExit("%s did not start:\n%s" % (name, st.read_log(name)))
    return proc


def message(token, extra=b"", body=b"Hello.\r\n", sender=b"alerts@planapulse.ai"):
    return (b"From: Alerts <" + sender + b">\r\nTo: ops@example.net\r\n"
            b"Subject: token-" + token + b"\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\n"
            b"Message-ID: <" + token + b"@planapulse.ai>\r\n" + extra + b"\r\n" + body)


def send(s, raw, rcpt="ops@example.net", sender="alerts@planapulse.ai"):
    """(code, text) of the end of DATA, the session kept for the next one."""
    try:
        s.sendmail(sender, [rcpt], raw)
        return 250, ""
    except smtplib.SMTPDataError as e:
        return e.smtp_code, e.smtp_error.decode("utf-8", "replace")


def delivered(st, token):
    found = wait_for(lambda: [m for m in st.sink_messages() if token.decode() in m],
                     timeout=30)
    return mxdkim.crlf(mxdkim.strip_sink_headers(found[0])) if found else b""


def fields(raw):
    head = raw.split(b"\r\n\r\n")[0]
    return re.findall(rb"^([^ \t\r\n:]+):([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", head, re.M)


def test_negotiation(st, label, spec, pf_name, expected):
    actions, protocol = negotiate(spec)
    got = names(protocol or 0)
    tap.is_(sorted(got), sorted(expected), "%s: the milter asks exactly for %s"
            % (label, ", ".join(sorted(expected))))
    tap.is_(actions, 0x1 | 0x10 | 0x100, "%s: actions: add and change headers, and the "
            "macros it needs (SMFIF_SETSYMLIST)" % label)
    tap.is_(NEGOTIATED_LISTS.get(spec), b"\0\0\0\2{auth_authen}\0\0\0\0\6i\0",
            "%s: {auth_authen} asked for at MAIL FROM, i at the end of the header" % label)
    log = st.read_log(pf_name)
    m = re.search(r"milter8_connect: events ([^\n]*)", log)    # names, space-separated
    pf = set(n.replace("SMFIP_", "") for n in m.group(1).split()) if m else set()
    tap.is_(sorted(pf - {"RCPT_REJ"}), sorted(expected),
            "%s: real Postfix logs the same event mask" % label,
            diag=m.group(0) if m else log[-1500:])


def test_refusals(st, label, port, dns):
    s = smtplib.SMTP("127.0.0.1", port, timeout=60)
    s.ehlo("client.example")
    token = uuid.uuid4().hex.encode()
    long_subject = b"Subject: " + b"x" * 1200 + b"\r\n"
    raw = message(token, extra=b"Keywords: k\r\n").replace(
        b"Subject: token-" + token + b"\r\n", long_subject + b"X-Token: token-" + token
        + b"\r\n")
    code, text = send(s, raw)
    tap.is_((code, text[:5]), (550, "5.6.0"), "%s: a signed header line of 1,209 octets: "
            "550 5.6.0 at end of header" % label, diag=text)
    token = uuid.uuid4().hex.encode()
    code, text = send(s, message(token, body=b"y" * 1500 + b"\r\n"))
    tap.is_((code, text[:5]), (550, "5.6.0"), "%s: a body line of 1,500 octets: 550 5.6.0 "
            "at end of message" % label, diag=text)
    token = uuid.uuid4().hex.encode()
    forged = b"".join(b"Authentication-Results: mx.mxkit.test; dkim=pass header.d=b%d.example"
                      b"\r\n" % i for i in range(1001))
    code, text = send(s, message(token, extra=forged))
    tap.is_((code, text[:5]), (550, "5.7.1"), "%s: 1001 forged A-R: 550 5.7.1 at end of "
            "header" % label, diag=text)
    token = uuid.uuid4().hex.encode()
    code, text = send(s, message(token))
    s.quit()
    got = delivered(st, token) if code == 250 else b""
    tap.ok(code == 250 and b"DKIM-Signature:" in got
           and dkim.DKIM(got).verify(dnsfunc=dns.dnsfunc),
           "%s: the next message in the same session is signed and verifies" % label,
           diag=text)


def test_every_header(st, label, port, dns):
    token = uuid.uuid4().hex.encode()
    extra = b""
    for i in range(280):
        if i % 14 == 7:
            extra += b"Authentication-Results: mx.mxkit.test; dkim=pass header.d=f%d.example" \
                     b"\r\n" % i
        extra += b"X-Trace-%d: hop %d\r\n" % (i, i)
    s = smtplib.SMTP("127.0.0.1", port, timeout=60)
    code, text = send(s, message(token, extra=extra))
    s.quit()
    got = delivered(st, token)
    f = fields(got)
    ar = [v for n, v in f if n.lower() == b"authentication-results"]
    traces = [n.decode() for n, v in f if n.startswith(b"X-Trace-")]
    tap.ok(code == 250 and ar == [], "%s: 305 headers: the 20 forged A-R among them all "
           "removed (%d left)" % (label, len(ar)), diag=text)
    tap.is_(traces, ["X-Trace-%d" % i for i in range(280)],
            "%s: the other 280 arrive, in order" % label)
    tap.ok(re.search(r"removed 20 forged Authentication-Results headers",
                     st.read_log("milter-" + label)),
           "%s: the milter counted exactly 20" % label)
    d = dkim.DKIM(got)
    tap.ok(d.verify(dnsfunc=dns.dnsfunc), "%s: and dkimpy verifies its signature" % label)
    token = uuid.uuid4().hex.encode()
    s = smtplib.SMTP("127.0.0.1", port, timeout=60)
    s.ehlo("mail.example.org")
    s.docmd("XCLIENT", "ADDR=203.0.113.5 NAME=mail.example.org")
    s.ehlo("mail.example.org")
    code, text = send(s, message(token, sender=b"news@partner.example"),
                      sender="news@partner.example")
    s.quit()
    got = delivered(st, token)
    ar = [v for n, v in fields(got) if n.lower() == b"authentication-results"]
    tap.ok(len(ar) == 1 and b"mx.mxkit.test" in ar[0] and b"dkim=none" in ar[0]
           and b"DKIM-Signature:" not in got,
           "%s: inbound mail from outside is verified: one A-R of ours" % label,
           diag=got.split(b"\r\n\r\n")[0][-600:])


def test_concurrent(st, label, port):
    before = st.read_log("milter-" + label).count("signed:")
    res = subprocess.run(["smtp-source", "-m", "30", "-s", "3", "-l", "4096",
                          "-f", "alerts@planapulse.ai", "-t", "many-%s@example.net" % label,
                          "127.0.0.1:%d" % port], capture_output=True, text=True, timeout=300)
    got = wait_for(lambda: len([m for m in st.sink_messages()
                                if "many-%s@example.net" % label in m]) >= 30, timeout=60)
    signed = [m for m in st.sink_messages()
              if "many-%s@example.net" % label in m and "DKIM-Signature:" in m]
    tap.ok(res.returncode == 0 and got and len(signed) == 30,
           "%s: 30 messages over 3 sessions, all signed (%d)" % (label, len(signed)),
           diag=res.stderr)
    tap.is_(st.read_log("milter-" + label).count("signed:") - before, 30,
            "%s: the milter logged 30 signatures" % label)


with Stack("milter-dkim-noreply") as st:
    tap.stack = st
    st.start_sink()
    dns = mxdkim.Dns(st.path("etc", "dns.txt"))
    mxdkim.one_rsa_key(st, dns)
    specs = {"unix": "unix:" + st.path("milter.sock"),
             "inet": "inet:%d@127.0.0.1" % st.port("milter-inet")}
    procs = {}
    for label, spec in specs.items():
        procs[label] = start(st, "milter-" + label, spec)
        pf_spec = spec if label == "unix" else "inet:127.0.0.1:%d" % st.port("milter-inet")
        port = st.start_postfix("pf-" + label, main={
            "debug_peer_list": "127.0.0.1", "smtpd_authorized_xclient_hosts": "127.0.0.0/8",
            "relay_domains": "example.net"},
            smtpd={"smtpd_milters": pf_spec, "milter_default_action": "tempfail"})
        test_refusals(st, label, port, dns)
        test_negotiation(st, label, spec, "pf-" + label,
                         UNIX_FLAGS if label == "unix" else TCP_FLAGS)
        test_every_header(st, label, port, dns)
        test_concurrent(st, label, port)
    for label, proc in procs.items():
        tap.ok(proc.poll() is None, "%s: milter-dkim kept serving" % label)

sys.exit(tap.done())
