#!/usr/bin/python3
"""lmtp-webhook "content_signed", attacked from outside (helper-110's
Content-Type replay): a genuine vendor.test DKIM signature whose h=
leaves out Content-Type (Gmail's usual h=; dkimpy's for a message without
one) over a body whose text the attacker chose (an auto-reply quoting
the customer). The attacker adds a top-level multipart Content-Type:
DKIM still passes, DMARC passes, aligned, and the quoted text reads as a
text part and the attacker's PDF. Real Postfix + milter-dkim (verify) +
Dovecot LMTP with the plugin + lmtp-webhook-spool + a receiver; messages
signed with dkimpy. The milter's verdicts stay (Gmail's genuine mail
must pass); the event's authentication.content_signed says whether an
aligned passing signature signs how the content reads."""

import base64
import email
import hashlib
import os
import shutil
import smtplib
import sys
import time
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage

import dkim
from hypothesis import HealthCheck, given, settings, strategies as hs

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import build_path, tap  # noqa: E402
from mxwebhook import Receiver, Runner, events_for, guide_code, make_secret  # noqa: E402
import mxdkim  # noqa: E402

PLUGIN_DIR = build_path("lmtp-webhook", ".libs")
TRUSTED = "mx.planapulse.test"
CRLF = b"\r\n"
ACME = "bills@acme.planapulse.app"
SECRET = make_secret(os.urandom(32))
MILTER_CONF = """\
socket = inet:{port}@127.0.0.1
mode = verify
dns_test_file = {dir}/etc/dns.txt
authserv_id = %s
""" % TRUSTED
EVIL_PDF = b"%PDF-1.4\n% attacker invoice: pay to IBAN XX00 EVIL 0000\n%%EOF\n"
GOOD_PDF = b"%PDF-1.4\n% vendor invoice 42: pay to the usual account\n%%EOF\n"
B = "b0undary-evil"
KEYS = {}
SEQ = [0]


def parts(boundary, pdf, name):
    return ("--%s\r\nContent-Type: text/plain\r\n\r\nInvoice attached.\r\n"
            "--%s\r\nContent-Type: application/pdf; name=%s\r\n"
            "Content-Disposition: attachment; filename=%s\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n%s\r\n--%s--\r\n"
            % (boundary, boundary, name, name, base64.b64encode(pdf).decode(), boundary))


def message(subject, headers, body, frm="Vendor <support@vendor.test>", to="me@attacker.test"):
    SEQ[0] += 1
    head = ["From: " + frm, "To: " + to, "Subject: " + subject,
            "Message-ID: <%d.%f@vendor.test>" % (SEQ[0], time.time()),
            "Date: Mon, 30 Nov 2026 10:00:00 +0000"] + list(headers)
    return CRLF.join(h.encode() for h in head) + CRLF * 2 + body


def autoreply(subject, headers):
    """The vendor's own auto-reply, quoting what the attacker typed."""
    body = ("Thank you for contacting Vendor. We received your request:\r\n\r\n"
            + parts(B, EVIL_PDF, "invoice-42.pdf") + "\r\nA human will answer soon.\r\n")
    return message(subject, headers, body.encode())


def sign(data, domain="vendor.test", headers=None, length=False):
    sel, key = KEYS[domain]
    kw = {"include_headers": [h.encode() for h in headers]} if headers is not None else {}
    sig = dkim.sign(data, sel.encode(), domain.encode(), key, length=length, **kw)
    return sig.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + data


def reshape(signed, add=(), drop=()):
    """The attacker's edit: header lines on top, some unsigned ones gone."""
    head, body = signed.split(CRLF * 2, 1)
    lines = [ln for ln in head.split(CRLF)
             if not any(ln.lower().startswith(d.lower().encode() + b":") for d in drop)]
    return CRLF.join([a.encode() for a in add] + lines) + CRLF * 2 + body


def deliver(st, rx, subject, data, sender="support@vendor.test"):
    try:
        with smtplib.SMTP("127.0.0.1", st.port("postfix-smtp"), timeout=60) as c:
            refused = c.sendmail(sender, [ACME], data)
    except smtplib.SMTPException as e:
        refused = {"error": repr(e)}
    ev = events_for(rx, subject)
    if refused or not ev:
        return None, ("refused %r" % refused) if refused else "no event"
    return ev[-1][2]["data"], None


def check(st, rx, name, data, dmarc, content_signed, dkim_entries, pdf=None):
    """The event's exact verdicts: dmarc, content_signed and each dkim
    entry's (domain, result, aligned, covers_content)."""
    subject = data.split(b"Subject: ", 1)[1].split(CRLF, 1)[0].decode()
    ev, why = deliver(st, rx, subject, data)
    if ev is None:
        tap.ok(False, name + ": an event", diag=why)
        return
    a = ev["authentication"]
    got = {"dmarc": a["dmarc"], "from_domain": a["from_domain"],
           "content_signed": a.get("content_signed", "(absent)"),
           "dkim": [[d["domain"], d["result"], d["aligned"], d.get("covers_content", "(absent)")]
                    for d in a["dkim"]]}
    want = {"dmarc": dmarc, "from_domain": "vendor.test", "content_signed": content_signed,
            "dkim": dkim_entries}
    tap.is_(got, want, name)
    if pdf is not None:
        sums = [x["sha256"] for x in ev["attachments"]]
        tap.ok(hashlib.sha256(pdf).hexdigest() in sums,
               name + ": (the event does list the PDF: content_signed is what tells)",
               diag=sums)


GMAIL_H = ["to", "subject", "message-id", "date", "from", "mime-version"]
PASS_COVERED = [["vendor.test", "pass", True, True]]
PASS_UNCOVERED = [["vendor.test", "pass", True, False]]


def test_replay(st, rx):
    """The attack and its variants: dmarc pass, content_signed false."""
    genuine = autoreply("ct replay gmail", ["MIME-Version: 1.0",
                                            "Content-Type: text/plain; charset=utf-8"])
    forged = reshape(sign(genuine, headers=GMAIL_H), drop=["Content-Type"],
                     add=['Content-Type: multipart/mixed; boundary="%s"' % B])
    check(st, rx, "Content-Type replaced over a Gmail-style h= (no content-type): dmarc pass, "
          "content_signed false", forged, "pass", False, PASS_UNCOVERED, pdf=EVIL_PDF)
    genuine = autoreply("ct replay plain", ["MIME-Version: 1.0"])
    forged = reshape(sign(genuine), add=['Content-Type: multipart/mixed; boundary="%s"' % B])
    check(st, rx, "Content-Type added to a plain mail dkimpy signed without one: "
          "content_signed false", forged, "pass", False, PASS_UNCOVERED, pdf=EVIL_PDF)
    genuine = autoreply("ct replay second", ["MIME-Version: 1.0",
                                             "Content-Type: text/plain; charset=utf-8"])
    forged = reshape(sign(genuine), add=['Content-Type: multipart/mixed; boundary="%s"' % B])
    # the milter already fails a signature whose h= names a MIME header
    # fewer times than the message has it (milter-dkim/message.c)
    check(st, rx, "a second Content-Type on top of a signed one (h= names it once): "
          "dkim fail, content_signed false", forged, "fail", False,
          [["vendor.test", "fail", False, False]])
    genuine = message("cd added", ["MIME-Version: 1.0", "Content-Type: application/pdf"],
                      base64.b64encode(GOOD_PDF) + CRLF)
    forged = reshape(sign(genuine), add=["Content-Disposition: attachment; filename=x.pdf"])
    check(st, rx, "an unsigned Content-Disposition added: content_signed false",
          forged, "pass", False, PASS_UNCOVERED)
    # helper-111's remaining gap: a vendor's bill to another customer,
    # signed without To in h=: a To: naming acme put on top
    genuine = message("to added", ["MIME-Version: 1.0", "Content-Type: text/plain"],
                      b"Your invoice 42 is 100 EUR.\r\n")
    forged = reshape(sign(genuine, headers=["from", "subject", "date", "message-id",
                                            "mime-version", "content-type"]),
                     drop=["To"], add=["To: " + ACME])
    check(st, rx, "a To: naming acme put on a bill signed without To in h=: "
          "content_signed false", forged, "pass", False, PASS_UNCOVERED)
    genuine = message("cte added", ["MIME-Version: 1.0", "Content-Type: application/pdf"],
                      base64.b64encode(GOOD_PDF) + CRLF)
    forged = reshape(sign(genuine), add=["Content-Transfer-Encoding: base64"])
    check(st, rx, "an unsigned Content-Transfer-Encoding added: content_signed false",
          forged, "pass", False, PASS_UNCOVERED)


def test_genuine(st, rx):
    """Genuine vendors' mail: true when the signature covers it."""
    bill = message("genuine multipart", [
        "MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="vb"',
        "Content-Transfer-Encoding: 7bit", "Content-Disposition: inline"],
        parts("vb", GOOD_PDF, "invoice-42.pdf").encode())
    check(st, rx, "a genuine multipart bill whose h= names its four MIME headers: "
          "content_signed true", sign(bill, headers=GMAIL_H + [
              "content-type", "content-transfer-encoding", "content-disposition"]),
          "pass", True, PASS_COVERED, pdf=GOOD_PDF)
    plain = message("genuine plain", [], b"Your invoice 42 is 100 EUR.\r\n")
    check(st, rx, "a plain mail signed without Content-Type, left alone: content_signed true",
          sign(plain), "pass", True, PASS_COVERED)
    gmail = message("genuine gmail", ["MIME-Version: 1.0",
                                      "Content-Type: text/plain; charset=utf-8"],
                    b"Your invoice 42 is 100 EUR.\r\n")
    check(st, rx, "a genuine Gmail-style h= without content-type, left alone: dmarc pass "
          "(the milter's verdict stays), content_signed false", sign(gmail, headers=GMAIL_H),
          "pass", False, PASS_UNCOVERED)


def test_length_and_alignment(st, rx):
    bill = message("with l=", ["MIME-Version: 1.0", "Content-Type: text/plain"],
                   b"Your invoice 42 is 100 EUR.\r\n")
    subject = "with l="
    ev, why = deliver(st, rx, subject, sign(bill, length=True))
    a = ev and ev["authentication"]
    tap.ok(a and a.get("content_signed") is False and len(a["dkim"]) == 1
           and a["dkim"][0].get("covers_content") is False
           and a["dkim"][0]["result"] in ("pass", "policy"),
           "h= names the MIME headers but l= is used: covers_content false, content_signed "
           "false", diag=a or why)
    bill = message("unaligned", ["MIME-Version: 1.0", "Content-Type: text/plain"],
                   b"Your invoice 42 is 100 EUR.\r\n")
    check(st, rx, "signed by attacker.test (h= covers the MIME headers), From: vendor.test: "
          "covers_content true, not aligned, content_signed false",
          sign(bill, domain="attacker.test"), "fail", False,
          [["attacker.test", "pass", False, True]])


def test_encoded_names(st, rx):
    """helper-112: the vendor's genuine bill to another customer whose
    account name is non-ASCII and holds text shaped like acme's address:
    the vendor's mailer writes it as an encoded word, signs To: and all,
    and the bill, sent on unchanged, decoded to a To: that read as naming
    acme ("Ä <bills@acme...>, <ap@attacker-co.test>"). The event's
    headers are as Python's email (policy.default) shows them: such a
    name quoted."""
    for i, name in enumerate(["\u00c4 <%s>," % ACME, "%s, \u00c4" % ACME]):
        msg = EmailMessage(policy=policy.default)
        msg["From"] = "Vendor <support@vendor.test>"
        msg["To"] = Address(display_name=name, addr_spec="ap@attacker-co.test")
        msg["Cc"] = Address(display_name=name, addr_spec="cc@attacker-co.test")
        msg["Subject"] = "encoded name %d" % i
        msg["Message-ID"] = "<ew-%d.%f@vendor.test>" % (i, time.time())
        msg.set_content("Invoice 77 attached.\n")
        data = msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", CRLF)
        signed = sign(data)
        want = email.message_from_bytes(signed, policy=policy.default)
        ev, why = deliver(st, rx, "encoded name %d" % i, signed)
        got = (ev["headers"]["to"], ev["headers"]["cc"]) if ev else why
        tap.is_(got, (str(want["To"]), str(want["Cc"])),
                "an encoded display name holding %r: To: and Cc: as Python shows them, quoted"
                % name)


GLOBEX = "<bills@globex.planapulse.app>"


def qword(text, charset="utf-8"):
    return "=?%s?q?%s?=" % (charset, "".join(
        c if c.isalnum() and c.isascii() else "".join("=%02X" % b for b in c.encode(charset))
        for c in text))


def bword(text):
    return "=?utf-8?b?%s?=" % base64.b64encode(text.encode()).decode()


def py_addresses(value):
    """The addr-specs Python's email (policy.default) reads in an address
    header's value, or the error it raises."""
    try:
        hdr = email.message_from_string("To: %s\n\n" % value, policy=policy.default)["To"]
        return [a.addr_spec for a in hdr.addresses]
    except Exception as e:  # noqa: BLE001 - what Python does is the reference
        return "error %s" % type(e).__name__


def guide_addressed_to_us():
    code = guide_code("python").replace('BILLS_ADDRESS = "bills@acme.example"',
                                        'BILLS_ADDRESS = "%s"' % ACME)
    ns = {}
    exec(compile(code, "webhook-consumers.md", "exec"), ns)  # noqa: S102 - the guide's code
    return ns["addressed_to_us"]


def same_reading(st, rx, name, to, addressed, frm=None):
    """One signed bill to globex whose To: (and Cc:, and From: when given)
    is the form under test: the event's header reads as the original's
    addresses in Python's email, and the guide's check says acme only
    where Python reads acme."""
    SEQ[0] += 1
    subject = "quoted words %d" % SEQ[0]
    data = message(subject, ["Cc: " + to], b"Invoice attached.\r\n", to=to,
                   frm=frm or "Vendor <support@vendor.test>")
    ev, why = deliver(st, rx, subject, sign(data))
    if ev is None:
        return tap.ok(False, name + ": an event", diag=why)
    h = ev["headers"]
    got = [py_addresses(h["to"]), py_addresses(h["cc"]), addressed({"to": h["to"], "cc": h["cc"]})]
    want = [py_addresses(to), py_addresses(to), ACME in py_addresses(to)]
    if frm:
        got.append(py_addresses(h["from"]))
        want.append(py_addresses(frm))
    return tap.is_(got, want, name, diag="sent %r; event To: %r" % (to, h["to"]))


def test_quoted_words(st, rx):
    """helper-117: an encoded word inside a quoted display name was wrapped
    in quotes of its own, which cancelled the string's: "=?..?q?bills=40
    acme..=2C_?=" <bills@globex> came out as ""bills@acme.., "" <...>, an
    address outside any quotes, and the guide's handle() took the vendor's
    genuine bill to globex for acme's. One in a comment, decoded, closed
    it with a ")". Every form: the event's To:, Cc: and From: read as the
    original's addresses in Python's email; then the same for generated
    names (hypothesis)."""
    addressed = guide_addressed_to_us()
    acme_list = "%s, " % ACME
    forms = [
        ('"%s" %s' % (qword(acme_list), GLOBEX), "a quoted Q word"),
        ('"%s ." %s' % (qword(acme_list), GLOBEX), "a quoted Q word and text"),
        ('"%s" %s' % (bword(acme_list), GLOBEX), "a quoted B word"),
        ('"%s" %s' % (qword(acme_list, "iso-8859-1"), GLOBEX), "a quoted ISO-8859-1 word"),
        ('"%s %s" %s' % (qword(ACME), qword(", x"), GLOBEX), "two quoted words"),
        ('"a\\"%s" %s' % (qword("x, %s, y" % ACME), GLOBEX), "an escaped quote, then a word"),
        ('"x %s y" %s' % (qword('" %s, "' % ACME), GLOBEX), "a word decoding to quotes"),
        ('"%s" %s' % (qword("\\"), GLOBEX), "a word decoding to a backslash"),
        ('"%s" %s' % (qword("<%s>" % ACME), GLOBEX), "a quoted word holding <acme>"),
        ('x (%s) %s' % (qword(") %s (" % ACME), GLOBEX), "a word closing a comment"),
        ('x (a (%s) b) %s' % (qword(") %s, (" % ACME), GLOBEX), "a word in a nested comment"),
        ('(%s) %s' % (qword("\\"), GLOBEX), "a backslash word in a comment"),
        ('%s %s' % (qword(acme_list), GLOBEX), "an unquoted word (helper-112)"),
        ('%s%s %s' % (qword("a"), qword('", %s, "' % ACME), GLOBEX), "two unquoted words"),
    ]
    for to, what in forms:
        same_reading(st, rx, "%s: the event's To:/Cc: read as Python reads the original"
                     % what, to, addressed)
    same_reading(st, rx, "From: a quoted word shaped like the vendor's address",
                 GLOBEX, addressed,
                 frm='"%s" <mallory@evil.example>' % qword("billing@vendor.test"))

    text = hs.lists(hs.sampled_from(list('ab @,.<>()"\\;:[]') + ["\u00e9", ACME]),
                    max_size=8).map("".join)
    where = hs.sampled_from(['"%s"', '"x %s y"', "x (%s)", "%s", '"a\\"%s"', "(y (%s))"])
    enc = hs.sampled_from([qword, bword])
    failed = []

    @settings(max_examples=40, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(text, where, enc)
    def prop(name, shape, encode):
        to = "%s %s" % (shape % encode(name), GLOBEX)
        if not same_reading(st, rx, "generated: %r" % to, to, addressed):
            failed.append(to)
    prop()
    tap.is_(failed, [], "every generated display name: the event reads as the original")


def main():
    rx = Receiver()
    with Stack("webhook-content-trust") as st:
        tap.stack = st
        st.users[ACME] = "pw"
        os.makedirs(st.path("spool"))
        shutil.chown(st.path("spool"), "nobody", "nogroup")
        os.makedirs(st.path("etc"), exist_ok=True)
        with open(st.path("acme.secret"), "w") as f:
            f.write(SECRET + "\n")
        os.chmod(st.path("acme.secret"), 0o644)
        with open(st.path("spool.conf"), "w") as f:
            f.write("spool_dir = %s\nsecret_file = %s\ntimeout = 5s\n"
                    % (st.path("spool"), st.path("acme.secret")))
        dns = mxdkim.Dns(st.path("etc", "dns.txt"))
        for dom, sel in (("vendor.test", "s1"), ("attacker.test", "a1")):
            key_path, _ = mxdkim.keygen(st, dns, dom, sel, "rsa", 1024)
            with open(key_path, "rb") as f:
                KEYS[dom] = (sel, f.read())
        # p=none for vendor.test: the unaligned case must arrive (dmarc=fail)
        dns.records["_dmarc.vendor.test"] = "v=DMARC1; p=none"
        dns.records["vendor.test"] = "v=spf1 ip4:192.0.2.1 -all"
        dns.write()
        _, mport, _ = mxdkim.start_milter(st, "milter", MILTER_CONF)
        url = "http://127.0.0.1:%d/ws/" % rx.port
        st.start_dovecot(
            lmtp_plugins="lmtp_webhook",
            plugin_settings={
                "lmtp_webhook_route": "%s %sacme secret_file=%s"
                                      % (ACME, url, st.path("acme.secret")),
                "lmtp_webhook_spool_dir": st.path("spool"),
                "lmtp_webhook_trusted_authserv_id": TRUSTED,
            },
            extra="mail_plugin_dir = %s\nrecipient_delimiter = +\n" % PLUGIN_DIR)
        st.start_postfix(main={"virtual_mailbox_domains": "acme.planapulse.app",
                               "smtpd_milters": "inet:127.0.0.1:%d" % mport,
                               "milter_default_action": "tempfail",
                               "disable_mime_output_conversion": "yes",
                               "local_header_rewrite_clients": "",
                               "recipient_delimiter": "+"})
        runner = Runner(st)
        runner.start()
        test_replay(st, rx)
        test_genuine(st, rx)
        test_length_and_alignment(st, rx)
        test_encoded_names(st, rx)
        test_quoted_words(st, rx)
        bad = [line for line in st.read_log("dovecot").splitlines()
               if "Panic" in line or "Fatal" in line or "killed with signal" in line]
        tap.is_(bad, [], "no crash, panic or fatal error in the Dovecot log")
    rx.stop()
    return tap.done()


sys.exit(main())
