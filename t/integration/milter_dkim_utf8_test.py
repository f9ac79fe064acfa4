#!/usr/bin/python3
"""milter-dkim and SMTPUTF8 (RFC 6531/6532) mail, end to end through real
Postfix (smtputf8_enable = yes) to a receiver that offers SMTPUTF8
(Python's smtpd; smtp-sink offers none), checked by dkimpy:

  1. sign: a UTF-8 display name and Subject; a UTF-8 local part (angle,
     bare, quoted), sent with and without SMTPUTF8; a From: domain in
     U-labels (lower and upper case) signed as its A-labels,
     d=xn--bcher-kva.example (RFC 8616), by the key of a SigningTable row
     written *@bücher.example (read as its A-labels). Every signature verifies with dkimpy and the From:
     header arrives byte for byte as sent. Before, every UTF-8 address was
     "not signed: 8-bit address" and left without a signature: DMARC
     failed at every receiver for such a sender of our own domains.
  2. what is still not signed, with its reason logged: bytes that are no
     UTF-8 (Latin-1), and characters readers show as another, as nothing
     or elsewhere (U+FF20, which NFKC makes '@'; a zero-width space;
     U+3002 for a dot in the domain; right-to-left letters, reordered
     around the '@'); A-labels that decode to another name than they are;
     U+1E9E; and (helper-132) an 8-bit byte before a backslash in the
     display name, which Shift_JIS and GBK read as one character, so that
     a reader decoding so shows another address.
  3. property (hypothesis): local parts of letters from many scripts sign
     and verify; one with a forbidden character inserted is not signed.
  4. verify: a bill from a@bücher.example signed by dkimpy with
     d=xn--bcher-kva.example from the vendor's SPF address: dkim, spf and
     dmarc pass, header.from=xn--bcher-kva.example (a real DNS server,
     Knot); the same From: unsigned from elsewhere: dmarc=fail under the
     A-label domain's p=reject, and 550 with dmarc_reject (before: a
     permerror, the U-label address unreadable to the strict reader).
"""

import os
import re
import smtplib
import sys
import threading
import uuid
import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning)
import asyncore  # noqa: E402  (smtpd's loop; deprecated, still in Python 3.11)
import smtpd  # noqa: E402

import dkim  # noqa: E402
from hypothesis import given, settings, strategies as hs, HealthCheck  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import tap, wait_for  # noqa: E402
from mxdns import Knot, txt  # noqa: E402
import mxdkim  # noqa: E402

SIGN_CONF = """\
socket = inet:{port}@127.0.0.1
mode = sign
key_table = {dir}/etc/key.table
signing_table = refile:{dir}/etc/signing.table
dns_test_file = {dir}/etc/dns.txt
"""
ALABEL = "xn--bcher-kva.example"
ULABEL = "b\u00fccher.example"


class Utf8Sink(smtpd.SMTPServer):
    """A receiver that offers SMTPUTF8 and 8BITMIME; keeps each message's bytes."""

    def __init__(self, port):
        super().__init__(("127.0.0.1", port), None, decode_data=False, enable_SMTPUTF8=True)
        self.messages = []
        self.thread = threading.Thread(target=asyncore.loop, kwargs={"timeout": 0.2},
                                       daemon=True)
        self.thread.start()

    def process_message(self, peer, mailfrom, rcpttos, data, **kw):
        self.messages.append(data)

    def stop(self):
        self.close()
        self.thread.join(timeout=5)

    def find(self, token, timeout=30):
        got = wait_for(lambda: [m for m in self.messages if token.encode() in m],
                       timeout=timeout)
        return mxdkim.crlf(got[0]) if got else None


def submit(st, mail_from, raw, utf8=True, port_name="postfix-smtp"):
    s = smtplib.SMTP("127.0.0.1", st.port(port_name), timeout=60)
    try:
        s.sendmail(mail_from, ["cust@example.net"], raw,
                   mail_options=["SMTPUTF8"] if utf8 else [])
        code = 250
    except smtplib.SMTPResponseException as e:
        code = e.smtp_code
    except smtplib.SMTPException as e:
        code = str(e)
    try:
        s.quit()
    except smtplib.SMTPException:
        pass
    return code


def build(from_value, token, subject="invoice"):
    return ("From: %s\r\nTo: <cust@example.net>\r\nSubject: %s %s\r\n"
            "Date: Sat, 05 Dec 2026 10:00:00 +0000\r\nMessage-ID: <%s@planapulse.ai>\r\n"
            "\r\nPlease pay invoice %s.\r\n" % (from_value, subject, token, token, token)
            ).encode()


def header(msg, name):
    m = re.search(rb"^" + name + rb":(.*?)\r\n(?![ \t])", msg, re.M | re.S | re.I)
    return m.group(1) if m else None


def signed_d(msg):
    return re.findall(rb"^DKIM-Signature:[^\r]*(?:\r\n[ \t][^\r]*)*?\bd=([^;\s]+)", msg,
                      re.M)


def verifies(dns, msg):
    try:
        return dkim.DKIM(msg).verify(dnsfunc=dns.dnsfunc) is True
    except dkim.DKIMException:
        return False


def sign_case(st, sink, dns, name, mail_from, from_value, want_d, utf8=True):
    token = uuid.uuid4().hex
    raw = build(from_value, token, subject="Rechnung f\u00fcr M\u00e4rz")
    code = submit(st, mail_from, raw, utf8=utf8)
    msg = sink.find(token) if code == 250 else None
    if msg is None:
        tap.ok(False, "%s: delivered" % name, diag="SMTP %r" % (code,))
        return
    ds = signed_d(msg)
    tap.ok(ds == [want_d.encode()] and verifies(dns, msg),
           "%s: signed d=%s, dkimpy verifies" % (name, want_d), diag="d=%r" % ds)
    tap.is_(header(msg, b"From"), b" " + from_value.encode(),
            "%s: the From: header arrives as sent" % name)


def unsigned_case(st, sink, name, from_value, reason):
    token = uuid.uuid4().hex
    before = st.read_log("milter")
    code = submit(st, "billing@planapulse.ai", build(from_value, token))
    msg = sink.find(token) if code == 250 else None
    log = st.read_log("milter")[len(before):]
    tap.ok(msg is not None and signed_d(msg) == [] and reason in log,
           "%s: delivered unsigned, the reason logged" % name,
           diag="code %r, log: %s" % (code, log.strip()[-400:]))


def test_sign(st, sink, dns):
    """1. and 2."""
    sign_case(st, sink, dns, "a UTF-8 display name and Subject", "billing@planapulse.ai",
              "J\u00f6rg M\u00fcller <billing@planapulse.ai>", "planapulse.ai")
    sign_case(st, sink, dns, "a UTF-8 local part", "j\u00f6rg@planapulse.ai",
              "J\u00f6rg <j\u00f6rg@planapulse.ai>", "planapulse.ai")
    sign_case(st, sink, dns, "a bare UTF-8 addr-spec", "j\u00f6rg@planapulse.ai",
              "j\u00f6rg@planapulse.ai", "planapulse.ai")
    sign_case(st, sink, dns, "a quoted UTF-8 local part", "j\u00f6rg@planapulse.ai",
              "\"j\u00f6rg\" <\"j\u00f6rg\"@planapulse.ai>", "planapulse.ai")
    sign_case(st, sink, dns, "a UTF-8 local part in a message sent without SMTPUTF8",
              "billing@planapulse.ai", "<\u00e5sa@planapulse.ai>", "planapulse.ai", utf8=False)
    sign_case(st, sink, dns, "a U-label From: domain", "a@" + ULABEL, "<a@%s>" % ULABEL, ALABEL)
    sign_case(st, sink, dns, "an upper-case U-label domain", "a@" + ULABEL,
              "A <a@B\u00dcCHER.example>", ALABEL)
    sign_case(st, sink, dns, "the A-label domain as written", "a@" + ALABEL, "<a@%s>" % ALABEL,
              ALABEL)
    unsigned_case(st, sink, "U+FF20 in the local part",
                  "<ceo\uff20victim.example@planapulse.ai>", "no UTF-8 (RFC 6532)")
    unsigned_case(st, sink, "a zero-width space in the local part",
                  "<bil\u200bling@planapulse.ai>", "as another, as nothing")
    unsigned_case(st, sink, "U+3002 for a dot in the domain",
                  "<a@planapulse\u3002ai>", "as another, as nothing")
    unsigned_case(st, sink, "right-to-left letters around the '@' (shown reordered)",
                  "<\u05d0@\u05d1.planapulse.ai>", "elsewhere")
    unsigned_case(st, sink, "A-labels that are no valid IDN (a decomposed u-umlaut)",
                  "<a@xn--bucher-xyd.example>", "RFC 5891")
    unsigned_case(st, sink, "U+1E9E, which readers and libidn2 map apart",
                  "<a@fa\u1e9e.example>", "no valid IDN")
    unsigned_case(st, sink, "an 8-bit byte before a backslash in the display name "
                  "(Shift_JIS reads another address)",
                  "\"\u3041\\\" <ceo@bank.example> x\" <billing@planapulse.ai>",
                  "before a backslash")
    token = uuid.uuid4().hex
    raw = build("<caf\u00e9@planapulse.ai>", token).replace(b"caf\xc3\xa9", b"caf\xe9")
    before = st.read_log("milter")
    code = submit(st, "billing@planapulse.ai", raw, utf8=False)
    msg = sink.find(token) if code == 250 else None
    log = st.read_log("milter")[len(before):]
    tap.ok(msg is not None and signed_d(msg) == [] and "no UTF-8" in log,
           "a Latin-1 local part: delivered unsigned, the reason logged",
           diag="code %r, log: %s" % (code, log.strip()[-400:]))


# letters of left-to-right scripts (right-to-left ones are refused: shown
# reordered around the '@'), less the ones refused as look-alikes or
# fillers (U+013F-0140, U+115F-1160)
LETTERS = hs.characters(whitelist_categories=("Ll", "Lu", "Lo", "Nd"), min_codepoint=0xc0,
                        max_codepoint=0x2fff).filter(
    lambda c: not (0x590 <= ord(c) <= 0x8ff or 0x13f <= ord(c) <= 0x140
                   or 0x115f <= ord(c) <= 0x1160))
FORBIDDEN = hs.sampled_from(["\u00a0", "\u00ad", "\u200b", "\u200e", "\u202e", "\u2060",
                             "\u3000", "\ufeff", "\uff20", "\ufe6b", "\uff0e", "\u0085",
                             "\u00b7", "\u05d0", "\u0627", "\u3164", "\ufe0f", "\ue000"])


def property_local_parts(st, sink, dns, examples):
    """3. letters of many scripts sign and verify; one forbidden character does not."""
    bad = []

    @settings(max_examples=examples, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(hs.text(LETTERS, min_size=1, max_size=12), FORBIDDEN, hs.integers(0, 12))
    def prop(local, forbidden, at):
        for lp, want in ((local, True), (local[:at] + forbidden + local[at:], False)):
            token = uuid.uuid4().hex
            code = submit(st, "billing@planapulse.ai", build("<%s@planapulse.ai>" % lp, token))
            msg = sink.find(token) if code == 250 else None
            good = msg is not None and (
                (signed_d(msg) == [b"planapulse.ai"] and verifies(dns, msg)) if want
                else signed_d(msg) == [])
            if not good:
                bad.append((lp, want, code))
    prop()
    tap.is_(bad, [], "%d generated UTF-8 local parts sign and verify; each with a forbidden "
            "character inserted is delivered unsigned" % examples)


VERIFY_CONF = mxdkim.VERIFY_CONF


def test_verify(st, sink, key, proc, conf, dns_servers):
    """4."""
    def check(client, mail_from, sign):
        token = uuid.uuid4().hex
        raw = ("From: Buchhandlung <a@%s>\r\nTo: <bills@planapulse.test>\r\n"
               "Subject: Rechnung %s\r\nDate: Sat, 05 Dec 2026 10:00:00 +0000\r\n"
               "Message-ID: <%s@%s>\r\n\r\nBitte zahlen.\r\n"
               % (ULABEL, token, token, ALABEL)).encode()
        if sign:
            raw = dkim.sign(raw, b"sel", ALABEL.encode(), key,
                            include_headers=[b"from", b"to", b"subject", b"date"]) + raw
        s = smtplib.SMTP("127.0.0.1", st.port("postfix-smtp"), timeout=30)
        s.ehlo("relay.test")
        s.docmd("XCLIENT", "ADDR=%s NAME=[UNAVAILABLE]" % client)
        s.ehlo("mail.%s" % ALABEL)
        try:
            s.sendmail(mail_from, ["bills@planapulse.test"], raw, mail_options=["SMTPUTF8"])
        except smtplib.SMTPResponseException as e:
            return "refused %d" % e.smtp_code
        finally:
            try:
                s.quit()
            except smtplib.SMTPException:
                pass
        msg = sink.find(token)
        ar = mxdkim.our_results(msg.decode(errors="replace") if msg else None)
        return ar[0] if len(ar) == 1 else repr(ar)

    a = check("127.0.0.2", "billing@" + ALABEL, True)
    tap.ok(re.search(r"dkim=pass header\.d=xn--bcher-kva\.example ", a)
           and "spf=pass" in a and re.search(r"dmarc=pass \(p=reject[^)]*\) "
                                             r"header\.from=xn--bcher-kva\.example ", a),
           "a@bücher.example signed with d=xn--bcher-kva.example from its SPF address: dkim, "
           "spf and dmarc pass, header.from in A-labels", diag=a)
    a = check("127.0.0.9", "billing@" + ALABEL, False)
    tap.ok(re.search(r"dmarc=fail \(p=reject[^)]*\) header\.from=xn--bcher-kva\.example ", a),
           "the same From: unsigned from elsewhere: dmarc=fail under the A-label domain's "
           "p=reject (not a permerror)", diag=a)
    with open(conf, "w") as f:
        f.write(VERIFY_CONF.replace("{port}", str(st.port("milter"))).replace(
            "{dns}", dns_servers).replace("{reject}", "yes"))
    before = st.read_log("milter").count("configuration reloaded")
    proc.send_signal(1)
    wait_for(lambda: st.read_log("milter").count("configuration reloaded") > before, timeout=10)
    a = check("127.0.0.9", "billing@" + ALABEL, False)
    tap.is_(a, "refused 550", "with dmarc_reject = yes: 550, reaches nobody")
    a = check("127.0.0.2", "billing@" + ALABEL, True)
    tap.ok("dmarc=pass" in a, "and the signed bill still passes", diag=a)


with Stack("milter-utf8") as st:
    tap.stack = st
    sink = Utf8Sink(st.port("sink"))
    dns = mxdkim.Dns(st.path("etc", "dns.txt"))
    mxdkim.keygen(st, dns, "planapulse.ai", "rsa2026", "rsa", 2048)
    mxdkim.keygen(st, dns, ALABEL, "sel", "rsa", 2048)
    with open(st.path("etc", "key.table"), "w") as f:
        f.write("pp planapulse.ai:rsa2026:%s/keys/rsa2026.private\n"
                "idn %s:sel:%s/keys/sel.private\n" % (st.dir, ALABEL, st.dir))
    with open(st.path("etc", "signing.table"), "w") as f:
        # the pattern as an operator may write it: U-labels, read as A-labels
        f.write("*@planapulse.ai pp\n*@%s idn\n" % ULABEL)
    proc, port, _ = mxdkim.start_milter(st, "milter", SIGN_CONF)
    st.start_postfix(main={"smtputf8_enable": "yes", "local_header_rewrite_clients": ""},
                     smtpd={"smtpd_milters": "inet:127.0.0.1:%d" % port,
                            "milter_default_action": "tempfail"})
    test_sign(st, sink, dns)
    property_local_parts(st, sink, dns, 20)
    key = open(st.path("keys", "sel.private"), "rb").read()
    record = dns.records["sel._domainkey." + ALABEL]
    sink.stop()

with Stack("milter-utf8-verify") as st:
    tap.stack = st
    sink = Utf8Sink(st.port("sink"))
    knot = Knot(st, {ALABEL: [txt("@", "v=spf1 ip4:127.0.0.2 -all"),
                              txt("_dmarc", "v=DMARC1; p=reject"),
                              txt("sel._domainkey", record)],
                     "planapulse.test": [txt("@", "v=spf1 -all")]})
    knot.start()
    conf_text = VERIFY_CONF.replace("{dns}", knot.servers).replace("{reject}", "no")
    proc, port, conf = mxdkim.start_milter(st, "milter", conf_text)
    st.start_postfix(main={"smtputf8_enable": "yes",
                           "smtpd_authorized_xclient_hosts": "127.0.0.0/8",
                           "relay_domains": "planapulse.test"},
                     smtpd={"smtpd_milters": "inet:127.0.0.1:%d" % port,
                            "milter_default_action": "tempfail"})
    test_verify(st, sink, key, proc, conf, knot.servers)
    sink.stop()

tap.done()
