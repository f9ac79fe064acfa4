#!/usr/bin/python3
"""milter-dkim under Postfix milter settings an operator may carry over
from an OpenDKIM setup (helper-119; real Postfix 3.7, Dovecot for SASL,
smtp-sink, dkimpy as the verifier and the vendor's signer):

  1. milter_protocol = 2, 4 and 6 (old OpenDKIM guides set 2), signing
     with simple/simple and relaxed/relaxed: every signature verifies
     with dkimpy, and the header reads "DKIM-Signature: v=1" (one
     space). Before: without SMFIP_HDR_LEADSPC the value's own space and
     Postfix's made two, and 0 of 25 simple signatures verified.
  2. verify mode under milter_protocol = 2 and 6: the vendor's valid
     dkimpy signatures (simple/simple, simple/relaxed, relaxed/relaxed)
     pass (dkim=pass in our Authentication-Results). Before: the simple
     ones failed under 2 (the values reached the verifier without their
     space).
  3. milter_mail_macros = "i {mail_addr}" (no {auth_authen}):
     sender_binding still holds, because the milter asks for the macro
     itself (SMFIR_SETSYMLIST): the bound user's other From: is refused
     with 550 and its own From: is signed. Before: signed for any From:.
  4. a "*  -" row in sender_binding binds every SASL user without a line
     of its own (a login alias Dovecot accepts is another name to
     Postfix's {auth_authen}): svc-billing is refused.
"""

import os
import re
import smtplib
import sys
import uuid

import dkim

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import tap  # noqa: E402
import mxdkim  # noqa: E402

AUTHSERV = "mx.protocol.test"
SIGN_CONF = """\
socket = inet:{port}@127.0.0.1
mode = sign
canonicalization = %s
key_table = {dir}/etc/key.table
signing_table = refile:{dir}/etc/signing.table
sender_binding = {dir}/etc/sender_binding
dns_test_file = {dir}/etc/dns.txt
"""
VERIFY_CONF = """\
socket = inet:{port}@127.0.0.1
mode = verify
dns_test_file = {dir}/etc/dns.txt
authserv_id = %s
""" % AUTHSERV
PROTOCOLS = ("2", "4", "6")


def message(token, frm="Alerts <alerts@planapulse.ai>"):
    # headers and a body whose white space simple canonicalization keeps
    return ("From: %s\r\nTo: <cust@example.net>\r\nSubject:  two  spaces %s\r\n"
            "Date: Fri, 04 Dec 2026 10:00:00 +0000\r\nMessage-ID: <%s@planapulse.ai>\r\n"
            "X-Folded: a\r\n\tfolded value\r\n\r\nYour invoice.  \r\n\r\n"
            % (frm, token, token)).encode()


def submit(st, pf, raw, user="svc-alerts", sender="alerts@planapulse.ai"):
    with smtplib.SMTP("127.0.0.1", st.port(pf + "-submission"), timeout=60) as s:
        s.ehlo("client.test")
        s.login(user, st.users[user])
        try:
            s.sendmail(sender, ["cust@example.net"], raw)
            return "250"
        except smtplib.SMTPResponseException as e:
            return "%d %s" % (e.smtp_code, e.smtp_error.decode(errors="replace"))


def signing(st, dns):
    for canon in ("simple/simple", "relaxed/relaxed"):
        for proto in PROTOCOLS:
            pf = "pf%s%s" % (proto, canon[0])
            results, spaces = [], set()
            for i in range(3):
                token = uuid.uuid4().hex
                code = submit(st, pf, message(token))
                got = mxdkim.sunk(st, token)
                if code != "250" or got is None:
                    results.append("SMTP %s, sunk %s" % (code, got is not None))
                    continue
                raw = got.encode()
                spaces.update(re.findall(rb"^DKIM-Signature:( *)v=1", raw, re.M))
                results.append(dkim.verify(raw, dnsfunc=dns.dnsfunc))
            tap.is_(results, [True] * 3, "milter_protocol = %s, %s: each of 3 signatures "
                    "verifies with dkimpy" % (proto, canon))
            tap.is_(sorted(spaces), [b" "], "milter_protocol = %s, %s: DKIM-Signature: "
                    "with one space" % (proto, canon))


def verifying(st, vendor_key):
    for proto in ("2", "6"):
        for canon in ((b"simple", b"simple"), (b"simple", b"relaxed"), (b"relaxed", b"relaxed")):
            token = uuid.uuid4().hex
            raw = ("From: Vendor <billing@vendor.test>\r\nTo: <bills@planapulse.test>\r\n"
                   "Subject:  bill %s\r\nMessage-ID: <%s@vendor.test>\r\n"
                   "X-Folded: a\r\n\tfolded\r\n\r\nInvoice  42.\r\n" % (token, token)).encode()
            raw = dkim.sign(raw, b"sel", b"vendor.test", vendor_key, canonicalize=canon) + raw
            with smtplib.SMTP("127.0.0.1", st.port("verify%s-smtp" % proto), timeout=60) as s:
                s.sendmail("billing@vendor.test", ["bills@planapulse.test"], raw)
            results = mxdkim.our_results(mxdkim.sunk(st, token), AUTHSERV)
            tap.ok(results and "dkim=pass" in results[0], "verify under milter_protocol = %s: "
                   "the vendor's valid %s/%s signature passes" % (proto, canon[0].decode(),
                                                                 canon[1].decode()),
                   diag="our A-R: %s" % results)


def binding(st, dns):
    for pf in ("pf6s", "macros"):
        token = uuid.uuid4().hex
        code = submit(st, pf, message(token, frm="CEO <ceo@plana.solutions>"))
        tap.ok(code.startswith("550 5.7.1"), "%s: svc-alerts may not send as ceo@plana.solutions"
               % ("milter_mail_macros without {auth_authen}" if pf == "macros"
                  else "default macros"), diag="SMTP %s" % code)
    code = submit(st, "pf6s", message(uuid.uuid4().hex, frm="CEO <ceo@plana.solutions>"),
                  user="svc-billing", sender="billing@planapulse.ai")
    tap.ok(code.startswith("550 5.7.1"), "a user without a line of its own is bound by the "
           "\"*  -\" row (helper-119: a login alias signed any From:)", diag="SMTP %s" % code)
    token = uuid.uuid4().hex
    code = submit(st, "macros", message(token))
    got = mxdkim.sunk(st, token) if code == "250" else None
    tap.ok(got is not None and dkim.verify(got.encode(), dnsfunc=dns.dnsfunc),
           "milter_mail_macros without {auth_authen}: its own From: is signed and verifies",
           diag="SMTP %s" % code)


def main():
    with Stack("milter-dkim-protocol") as st:
        tap.stack = st
        st.start_dovecot()
        st.start_sink()
        os.makedirs(st.path("etc"), exist_ok=True)
        dns = mxdkim.Dns(st.path("etc", "dns.txt"))
        mxdkim.keygen(st, dns, "planapulse.ai", "rsa2026", "rsa", 1024)
        mxdkim.keygen(st, dns, "plana.solutions", "staff2026", "rsa", 1024)
        vendor_path, _ = mxdkim.keygen(st, dns, "vendor.test", "sel", "rsa", 1024)
        dns.records["_dmarc.vendor.test"] = "v=DMARC1; p=none"
        dns.write()
        with open(vendor_path, "rb") as f:
            vendor_key = f.read()
        with open(st.path("etc", "key.table"), "w") as f:
            f.write("rsa planapulse.ai:rsa2026:%s/keys/rsa2026.private\n"
                    "staff plana.solutions:staff2026:%s/keys/staff2026.private\n" % (st.dir, st.dir))
        with open(st.path("etc", "signing.table"), "w") as f:
            f.write("*@planapulse.ai rsa\n*@plana.solutions staff\n")
        with open(st.path("etc", "sender_binding"), "w") as f:
            f.write("svc-alerts  alerts@planapulse.ai\n*  -\n")
        ports = {}
        for canon in ("simple/simple", "relaxed/relaxed"):
            _, ports[canon[0]], _ = mxdkim.start_milter(st, "sign-" + canon[0],
                                                        SIGN_CONF % canon)
        _, vport, _ = mxdkim.start_milter(st, "verify", VERIFY_CONF)
        for canon, port in ports.items():
            milter = {"smtpd_milters": "inet:127.0.0.1:%d" % port,
                      "milter_default_action": "tempfail"}
            for proto in PROTOCOLS:
                st.start_postfix(name="pf%s%s" % (proto, canon),
                                 main={"milter_protocol": proto}, submission=milter)
        st.start_postfix(name="macros", main={"milter_mail_macros": "i {mail_addr}"},
                         submission={"smtpd_milters": "inet:127.0.0.1:%d" % ports["s"],
                                     "milter_default_action": "tempfail"})
        for proto in ("2", "6"):
            st.start_postfix(name="verify" + proto,
                             main={"milter_protocol": proto, "relay_domains": "planapulse.test"},
                             smtpd={"smtpd_milters": "inet:127.0.0.1:%d" % vport,
                                    "milter_default_action": "tempfail"})
        signing(st, dns)
        verifying(st, vendor_key)
        binding(st, dns)
        said = st.read_log("sign-s").count("does not offer SMFIP_HDR_LEADSPC")
        tap.is_(said, 1, "the signer says once that milter_protocol 2 and 4 lack the space")
    return tap.done()


sys.exit(main())
