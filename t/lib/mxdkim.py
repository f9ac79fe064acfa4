"""mxdkim - helpers for milter-dkim tests: generate keys with
milter-dkim-keygen, publish their TXT records in a libopendkim query file
and to dkimpy (python3-dkim) through a dnsfunc, write OpenDKIM-format
tables, start the milter under a Stack; for the verify tests, a receiving
Postfix with the milter and a vendor's Postfix signing with its own
milter-dkim, mail sent as any client through XCLIENT, the sink's copy and
our Authentication-Results in it."""

import os
import re
import smtplib
import struct
import subprocess
import time

from mxtest import build_path, wait_for

MILTER = build_path("milter-dkim", "milter-dkim")
KEYGEN = build_path("milter-dkim", "milter-dkim-keygen")


class Dns:
    """TXT records as milter-dkim-keygen printed them (BIND format)."""

    def __init__(self, path):
        self.path = path
        self.records = {}

    def add_bind(self, text):
        name = text.split()[0].rstrip(".")
        self.records[name] = "".join(re.findall(r'"([^"]*)"', text))
        self.write()
        return name

    def write(self):
        with open(self.path, "w") as f:
            for name, value in self.records.items():
                f.write("%s %s\n" % (name, value))

    def dnsfunc(self, name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        value = self.records.get(name.rstrip("."))
        return value.encode() if value else None



# a verifying milter behind the test's knotd (mxdns.Knot): format with
# port, dns (the server list) and reject (dmarc_reject)
VERIFY_CONF = """\
socket = inet:{port}@127.0.0.1
mode = verify
authserv_id = mx.mxkit.test
dns_servers = {dns}
dns_timeout = 1s
auth_timeout = 3s
dmarc_reject = {reject}
"""
SIGNED_HEADERS = [b"from", b"to", b"subject", b"date"]   # what the tests' dkimpy signs
# what Postfix says of a DMARC refusal, and the A-R of SPF for vendor.test
# (the attack tests' Knot zone: p=reject, SPF for 127.0.0.2)
REJECTED = "refused 550 5.7.1 Rejected by the DMARC policy of the From: domain"
SPF_PASS = ("spf=pass (127.0.0.2 is permitted by vendor.test) smtp.mailfrom=billing@vendor.test; "
            "dmarc=pass (p=reject sp=reject pct=100 adkim=r aspf=r, dkim not aligned, "
            "spf aligned)")

def keygen(st, dns, domain, selector, kind="rsa", bits=2048):
    d = st.path("keys")
    os.makedirs(d, exist_ok=True)
    res = subprocess.run([KEYGEN, "-d", domain, "-s", selector, "-t", kind, "-b", str(bits),
                          "-D", d], capture_output=True, text=True, check=True)
    dns.add_bind(res.stdout)
    return os.path.join(d, selector + ".private"), res.stdout


def one_rsa_key(st, dns, domain="planapulse.ai", selector="rsa2026"):
    """An RSA-2048 key published in dns, named "rsa" in etc/key.table and
    signing every *@domain sender in etc/signing.table."""
    keygen(st, dns, domain, selector, "rsa", 2048)
    with open(st.path("etc", "key.table"), "w") as f:
        f.write("rsa %s:%s:%s/keys/%s.private\n" % (domain, selector, st.dir, selector))
    with open(st.path("etc", "signing.table"), "w") as f:
        f.write("*@%s rsa\n" % domain)


def start_milter(st, name, conf_text):
    port = st.port(name)
    conf = st.path("etc", name + ".conf")
    with open(conf, "w") as f:
        f.write(conf_text.replace("{port}", str(port)).replace("{dir}", st.dir))
    proc = st.start_daemon(name, [MILTER, "-f", "-c", conf], port=port)
    return proc, port, conf


def crlf(message):
    if isinstance(message, str):
        message = message.encode()
    return re.sub(rb"(?<!\r)\n", b"\r\n", message)


def strip_sink_headers(message):
    """smtp-sink prepends X-Client-Addr ... X-Rcpt-Args; the message
    itself starts after them."""
    lines = message.split("\n")
    while lines and re.match(r"^X-(Client|Helo|Mail|Rcpt)-", lines[0]):
        lines.pop(0)
    return "\n".join(lines)


def start_receiver(st, milter_port):
    """The receiving Postfix: relays planapulse.test to the sink through
    milter-dkim on milter_port (tempfail if it is down); lets loopback
    clients claim any address with XCLIENT."""
    return st.start_postfix(main={"smtpd_authorized_xclient_hosts": "127.0.0.0/8",
                                  "relay_domains": "planapulse.test",
                                  "inet_protocols": "all"},
                            smtpd={"smtpd_milters": "inet:127.0.0.1:%d" % milter_port,
                                   "milter_default_action": "tempfail"})


def start_vendor(st, key_path, conf_text, relay_port, domain="vendor.test", selector="sel"):
    """The vendor's own Postfix (mail.vendor.test, sending from 127.0.0.2)
    relaying everything to relay_port, signing *@domain with key_path
    through its own milter-dkim (conf_text); returns its smtpd port."""
    with open(st.path("etc", "vendor.keys"), "w") as f:
        f.write("vendor %s:%s:%s\n" % (domain, selector, key_path))
    with open(st.path("etc", "vendor.signing"), "w") as f:
        f.write("*@%s vendor\n" % domain)
    _, vport, _ = start_milter(st, "vendor-milter", conf_text)
    relay = "smtp:[127.0.0.1]:%d" % relay_port
    return st.start_postfix(name="vendor", main={
        "myhostname": "mail." + domain, "default_transport": relay,
        "relay_transport": relay, "smtp_bind_address": "127.0.0.2"},
        smtpd={"smtpd_milters": "inet:127.0.0.1:%d" % vport})


def send_as(st, client, mail_from, rcpt, raw, helo="mail.example.org", timeout=30):
    """One transaction on the receiver's port 25 as client (XCLIENT ADDR);
    returns (code, text, seconds)."""
    t0 = time.monotonic()
    s = smtplib.SMTP("127.0.0.1", st.port("postfix-smtp"), timeout=timeout)
    s.ehlo("relay.test")
    code, text = s.docmd("XCLIENT", "ADDR=%s NAME=[UNAVAILABLE]" % client)
    if code != 220:
        s.close()
        return (code, "XCLIENT refused: %s" % text.decode(errors="replace"),
                time.monotonic() - t0)
    s.ehlo(helo)
    try:
        s.sendmail(mail_from, [rcpt], raw)
        result = (250, "")
    except smtplib.SMTPDataError as e:
        result = (e.smtp_code, e.smtp_error.decode(errors="replace"))
    except smtplib.SMTPException as e:
        result = (0, str(e))
    try:
        s.quit()
    except smtplib.SMTPException:
        pass
    return result + (time.monotonic() - t0,)


def sunk(st, token, timeout=20):
    """The sink's copy of the message carrying token (CRLF, as sent), or None."""
    found = wait_for(lambda: [m for m in st.sink_messages() if token in m], timeout=timeout)
    return crlf(strip_sink_headers(found[0])).decode() if found else None


def our_results(msg, authserv_id="mx.mxkit.test"):
    """Every Authentication-Results header claiming authserv_id, unfolded."""
    hdrs = re.findall(r"^Authentication-Results:(.*?)(?=^\S)", msg or "", re.M | re.S)
    return [re.sub(r"\r?\n[ \t]+", " ", h).strip() for h in hdrs
            if re.match(r"\s*" + re.escape(authserv_id) + r"\s*;", h)]


def milter_packet(cmd, data=b""):
    """One milter protocol packet: 4-byte length, command byte, data."""
    return struct.pack(">I", len(data) + 1) + cmd + data


def read_milter_packet(s):
    """(command, data) of the next packet on socket s; (None, None) at
    end of file."""
    head = b""
    while len(head) < 4:
        chunk = s.recv(4 - len(head))
        if not chunk:
            return None, None
        head += chunk
    n = struct.unpack(">I", head)[0]
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            return None, None
        data += chunk
    return data[:1], data[1:]
