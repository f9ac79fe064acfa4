#!/usr/bin/python3
"""milter-dkim through real Postfix (smtpd_milters), checked with dkimpy:

  1. svc-billing submits (SASL) as noreply@planapulse.ai: one pass signs
     with RSA-2048 and Ed25519; both signatures verify with dkimpy using
     the TXT records milter-dkim-keygen printed. The KeyTable and
     SigningTable are in OpenDKIM's format (refile: prefix, '%').
  2. inbound on port 25 (XCLIENT from an outside address): unsigned,
     validly signed, tampered-body and wrong-key messages each get the
     right Authentication-Results; a forged A-R with our authserv_id is
     removed, a foreign one kept.
  3. sender_binding: svc-billing may send as *@planapulse.ai and gets
     550 5.7.1 as staff@plana.solutions.
  5. SIGHUP with a new key: the next message uses it; SIGHUP with a
     broken table: the old keys keep signing, the error is logged.
  6. SigningTable rows that overlap (the sender's own row, *@domain rows,
     a second KeyTable name for the same key): one signature per
     domain/selector, never the same one twice.
"""

import os
import re
import smtplib
import sys
import uuid

import dkim

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import tap, wait_for  # noqa: E402
import mxdkim  # noqa: E402
import mxpolicy as mp  # noqa: E402

AUTHSERV = "mx.mxkit.test"
CONF = """\
socket = inet:{port}@127.0.0.1
mode = sign, verify
key_table = refile:{dir}/etc/key.table
signing_table = refile:{dir}/etc/signing.table
sender_binding = {dir}/etc/sender_binding
dns_test_file = {dir}/etc/dns.txt
authserv_id = mx.mxkit.test
"""


def write(st, name, text):
    with open(st.path("etc", name), "w") as f:
        f.write(text)


def submit(st, user, sender, rcpt, token, extra_headers=""):
    s = mp.login(st, user)
    body = ("From: Billing <%s>\r\nTo: <%s>\r\nSubject: invoice %s\r\n"
            "Date: Sun, 22 Nov 2026 10:00:00 +0000\r\nMessage-ID: <%s@planapulse.ai>\r\n%s\r\n"
            "Your invoice %s is attached.\r\n" % (sender, rcpt, token, token, extra_headers,
                                                  token)).encode()
    try:
        s.sendmail(sender, [rcpt], body)
        result = (250, "")
    except smtplib.SMTPResponseException as e:
        result = (e.smtp_code, e.smtp_error.decode(errors="replace"))
    except smtplib.SMTPRecipientsRefused as e:
        code, text = list(e.recipients.values())[0]
        result = (code, text.decode(errors="replace"))
    s.quit()
    return result


def sunk(st, token):
    found = wait_for(lambda: [m for m in st.sink_messages() if token in m], timeout=20)
    return mxdkim.crlf(mxdkim.strip_sink_headers(found[0])) if found else None


def signatures(message):
    return re.findall(rb"^DKIM-Signature:.*?(?=^\S)", message, re.M | re.S)


def verify_each(message, dns):
    """dkimpy verification of every DKIM-Signature (index by index)."""
    d = dkim.DKIM(message)
    results = []
    for i in range(len(signatures(message))):
        results.append(d.verify(idx=i, dnsfunc=dns.dnsfunc))
    return results


def test_signing(st, dns):
    token = uuid.uuid4().hex
    code, text = submit(st, "svc-billing", "noreply@planapulse.ai", "cust@example.net", token)
    tap.is_(code, 250, "svc-billing's message accepted through the milter", diag=text)
    msg = sunk(st, token)
    tap.ok(msg is not None, "the signed message reached smtp-sink")
    sigs = signatures(msg or b"")
    tap.is_(len(sigs), 2, "two DKIM-Signature headers in one pass")
    algs = sorted(re.search(rb"a=([a-z0-9-]+)", s).group(1).decode() for s in sigs)
    tap.is_(algs, ["ed25519-sha256", "rsa-sha256"], "one RSA, one Ed25519 signature")
    tap.ok(all(b"d=planapulse.ai" in s for s in sigs), "d= aligned with From: planapulse.ai")
    tap.is_(verify_each(msg or b"", dns), [True, True], "both signatures verify with dkimpy")
    tap.ok(re.search(r"signed: planapulse.ai/\S+, planapulse.ai/\S+ \(From "
                     r"noreply@planapulse.ai, sasl_username=svc-billing\)",
                     st.read_log("milter")), "one log line names both signatures and the user")
    return msg


def test_binding(st):
    code, text = submit(st, "svc-billing", "staff@plana.solutions", "x@example.net", "bind")
    tap.is_(code, 550, "sender_binding: svc-billing as staff@plana.solutions refused")
    tap.ok("5.7.1" in text, "with 5.7.1", diag=text)
    tap.ok("sender_binding: svc-billing may not send as staff@plana.solutions"
           in st.read_log("milter"), "the refusal is logged")
    token = uuid.uuid4().hex
    code, _ = submit(st, "alice@mxkit.test", "alice@plana.solutions", "x@example.net", token)
    tap.is_(code, 250, "a user without a binding line is not restricted")
    msg = sunk(st, token)
    tap.ok(msg and b"d=plana.solutions" in msg, "and is signed for plana.solutions ('%')")


def inbound(st, raw):
    """Send raw bytes on port 25 as an outside client; return the stored copy."""
    s = smtplib.SMTP("127.0.0.1", st.port("postfix-smtp"), timeout=30)
    s.ehlo("mail.example.org")
    code, _ = s.docmd("XCLIENT", "ADDR=203.0.113.5 NAME=mail.example.org")
    s.ehlo("mail.example.org")
    token = re.search(rb"token-([0-9a-f]+)", raw).group(1)
    s.sendmail("sender@example.org", ["alice@mxkit.test"], raw)
    s.quit()
    found = wait_for(lambda: [m for m in st.maildir_messages("alice@mxkit.test")
                              if token in m], timeout=20)
    return found[0] if found else b""


def auth_results(message):
    return [h for h in re.findall(rb"^Authentication-Results:.*?(?=^\S)", message, re.M | re.S)]


def external_message(extra=b""):
    token = uuid.uuid4().hex.encode()
    return (b"From: Partner <news@partner.example>\r\nTo: alice@mxkit.test\r\n"
            b"Subject: token-" + token + b"\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\n"
            b"Message-ID: <" + token + b"@partner.example>\r\n" + extra +
            b"\r\nHello from a partner.\r\n")


def test_inbound(st, dns, partner_key, other_key):
    msg = inbound(st, external_message())
    ar = auth_results(msg)
    tap.ok(len(ar) == 1 and b"mx.mxkit.test" in ar[0] and b"dkim=none" in ar[0],
           "unsigned inbound: Authentication-Results dkim=none", diag=repr(ar))

    raw = external_message()
    signed = dkim.sign(raw, b"p2026", b"partner.example", partner_key,
                       include_headers=[b"from", b"to", b"subject", b"date"])
    msg = inbound(st, signed + raw)
    ar = auth_results(msg)
    tap.ok(len(ar) == 1 and re.search(rb"dkim=pass header.d=partner.example header.s=p2026 "
                                      rb"header.a=rsa-sha256 header.b=\S{8}", ar[0]),
           "validly signed: dkim=pass with header.d/s/a/b", diag=repr(ar))
    tap.ok(msg.startswith(b"Authentication-Results:") or
           msg.split(b"\n", 1)[0].startswith(b"Return-Path")
           and b"\nAuthentication-Results:" in msg.split(b"DKIM-Signature")[0],
           "A-R inserted above the signature (top of the header)")

    raw = external_message()
    signed = dkim.sign(raw, b"p2026", b"partner.example", partner_key)
    msg = inbound(st, signed + raw.replace(b"Hello from", b"Hello FROM"))
    ar = auth_results(msg)
    tap.ok(len(ar) == 1 and b"dkim=fail" in ar[0] and b"header.d=partner.example" in ar[0],
           "tampered body: dkim=fail", diag=repr(ar))

    raw = external_message()
    signed = dkim.sign(raw, b"p2026", b"partner.example", other_key)
    msg = inbound(st, signed + raw)
    ar = auth_results(msg)
    tap.ok(len(ar) == 1 and b"dkim=fail" in ar[0], "signed with the wrong key: dkim=fail",
           diag=repr(ar))

    forged = external_message(b"Authentication-Results: mx.mxkit.test; dkim=pass "
                              b"header.d=bank.example\r\nAuthentication-Results: "
                              b"other.example; spf=pass\r\n")
    msg = inbound(st, forged)
    ar = auth_results(msg)
    tap.ok(not any(b"bank.example" in h for h in ar), "forged A-R claiming our id removed",
           diag=repr(ar))
    tap.ok(any(b"other.example; spf=pass" in h for h in ar), "a foreign A-R is kept")
    tap.ok(len([h for h in ar if h.startswith(b"Authentication-Results: mx.mxkit.test")]) == 1,
           "exactly one A-R of ours")


def test_reload(st, dns, proc):
    path, _ = mxdkim.keygen(st, dns, "planapulse.ai", "rsa2027", "rsa", 2048)
    write(st, "key.table", KEYTABLE.replace("rsa2026", "rsa2027"))
    proc.send_signal(1)
    tap.ok(wait_for(lambda: st.read_log("milter").count("configuration reloaded") >= 1),
           "SIGHUP: reload logged")
    token = uuid.uuid4().hex
    submit(st, "svc-billing", "noreply@planapulse.ai", "cust@example.net", token)
    msg = sunk(st, token) or b""
    tap.ok(b"s=rsa2027" in msg and b"s=rsa2026" not in msg, "the next message uses the new key")
    tap.is_(verify_each(msg, dns), [True, True], "and verifies")

    write(st, "signing.table", "*@planapulse.ai rsa,ed,nosuchkey\n")
    proc.send_signal(1)
    tap.ok(wait_for(lambda: "reload of" in st.read_log("milter")),
           "SIGHUP with a broken table: refused")
    tap.ok(re.search(r"signing.table:1: key name 3 of the line \(9 bytes, not repeated here\) "
                     r"is not in the KeyTable \(its names: \S+", st.read_log("milter"))
           and "nosuchkey" not in st.read_log("milter"),
           "the error names file, line and field, and the KeyTable's names, never the "
           "value (a table pointed at a Secret's file printed its password)")
    token = uuid.uuid4().hex
    submit(st, "svc-billing", "noreply@planapulse.ai", "cust@example.net", token)
    msg = sunk(st, token) or b""
    tap.is_(verify_each(msg, dns), [True, True], "the old keys keep signing")


def test_overlap(st, dns, proc):
    write(st, "key.table", KEYTABLE.replace("rsa2026", "rsa2027").replace("{dir}", st.dir)
          + "rsa-again planapulse.ai:rsa2027:%s/keys/rsa2027.private\n" % st.dir)
    write(st, "signing.table", "noreply@planapulse.ai rsa\n*@planapulse.ai rsa,ed\n"
          "*@planapulse.ai ed,rsa-again\n*@plana.solutions staff\n")
    reloads = st.read_log("milter").count("configuration reloaded")
    proc.send_signal(1)
    tap.ok(wait_for(lambda: st.read_log("milter").count("configuration reloaded") > reloads),
           "overlapping rows: reload accepted")
    token = uuid.uuid4().hex
    code, text = submit(st, "svc-billing", "noreply@planapulse.ai", "cust@example.net", token)
    msg = sunk(st, token) or b""
    sels = sorted(re.search(rb"s=([a-z0-9]+)", x).group(1).decode() for x in signatures(msg))
    tap.is_(sels, ["ed2026", "rsa2027"], "four matching keys on three rows: one signature per "
            "domain/selector", diag="%s %s" % (code, text))
    tap.is_(verify_each(msg, dns), [True, True], "both verify with dkimpy")
    line = [x for x in st.read_log("milter").splitlines() if "noreply@planapulse.ai" in x
            and "signed:" in x][-1:]
    tap.ok(line and line[0].count("planapulse.ai/rsa2027") == 1
           and line[0].count("planapulse.ai/ed2026") == 1, "the log line names each once",
           diag=repr(line))


KEYTABLE = """\
# OpenDKIM KeyTable, unchanged
rsa    planapulse.ai:rsa2026:{dir}/keys/rsa2026.private
ed     planapulse.ai:ed2026:{dir}/keys/ed2026.private
staff  %:staff2026:{dir}/keys/staff2026.private
"""

with Stack("milter-dkim") as st:
    tap.stack = st
    st.start_dovecot()
    st.start_sink()
    dns = mxdkim.Dns(st.path("etc", "dns.txt"))
    mxdkim.keygen(st, dns, "planapulse.ai", "rsa2026", "rsa", 2048)
    mxdkim.keygen(st, dns, "planapulse.ai", "ed2026", "ed25519")
    mxdkim.keygen(st, dns, "plana.solutions", "staff2026", "rsa", 2048)
    partner_path, _ = mxdkim.keygen(st, dns, "partner.example", "p2026", "rsa", 2048)
    other_path, _ = mxdkim.keygen(st, mxdkim.Dns(st.path("etc", "unused")), "x", "y")
    KEYTABLE = KEYTABLE.replace("{dir}", st.dir)
    write(st, "key.table", KEYTABLE)
    write(st, "signing.table", "# refile: patterns\n*@planapulse.ai rsa,ed\n"
          "*@plana.solutions staff\n")
    write(st, "sender_binding", "svc-billing  *@planapulse.ai\n")
    proc, port, conf = mxdkim.start_milter(st, "milter", CONF)
    milter = {"smtpd_milters": "inet:127.0.0.1:%d" % port, "milter_default_action": "tempfail"}
    st.start_postfix(main={"smtpd_authorized_xclient_hosts": "127.0.0.0/8"},
                     submission=milter, smtpd=milter)
    test_signing(st, dns)
    test_binding(st)
    test_inbound(st, dns, open(partner_path, "rb").read(), open(other_path, "rb").read())
    test_reload(st, dns, proc)
    test_overlap(st, dns, proc)
    tap.ok(proc.poll() is None, "milter-dkim is still running")

sys.exit(tap.done())
