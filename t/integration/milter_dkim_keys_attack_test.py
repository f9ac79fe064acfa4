#!/usr/bin/python3
"""milter-dkim's checks of the keys and tables it signs with (helper-65
F3, F4), with real Postfix and dkimpy:

  1. a SigningTable pattern with '*' in its domain that can match a domain
     its key's fixed d= does not align with ("*planapulse.ai" matched
     evilplanapulse.ai and signed it d=planapulse.ai; "*", "*@*.ai") is
     refused by -t and by the start, with an error naming the patterns to
     write; "*.planapulse.ai" and "*@*.planapulse.ai" are fine: mail from
     a subdomain is signed d=planapulse.ai and verifies (dkimpy), mail
     from evilplanapulse.ai is not signed;
  2. RSA keys over 4096 bits (their DNS record is longer than the 1 KB
     libopendkim reads: OpenDKIM receivers and our verifier answered
     permerror) are refused: milter-dkim-keygen -b 8192 (and rotate -b
     8192), a KeyTable with an 8192-bit key in -t and at the start, the
     error says why; a 4096-bit key is made, signs, and verifies;
  3. a '%' KeyTable row with the selector of another row and another key
     (helper-99: "%:mail:K1" for "*", "planapulse.ai:mail:K2" for
     "*@planapulse.ai": planapulse.ai mail was signed s=mail with K1, whose
     signature dkimpy failed against the published K2) is refused by -t
     and the start, whichever row comes first, and so is "mail.%" against
     a fixed mail.planapulse.ai; "mail.%" against planapulse.ai (it cannot
     make it), and the same key in both rows, are accepted;
  4. sign_headers or oversign_headers naming Authentication-Results or
     DKIM-Signature (helper-99: -t accepted them, every signature then
     failed) are refused by -t and the start, saying why;
  5. a '%' row (SigningTable *@*.plana.solutions) and a From: domain that
     makes no DNS name as d= (a 64-octet label; s._domainkey.d past 253
     octets): helper-99 saw it signed, and every verifier (ours: "d= is
     not a DNS name") fails it; now delivered unsigned and logged, as
     mail of a domain no row matches; sub.plana.solutions is signed and
     verifies.
"""

import os
import re
import smtplib
import subprocess
import sys
import uuid

import dkim

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import tap, run, wait_for  # noqa: E402
import mxdkim  # noqa: E402

CONF = """\
socket = inet:{port}@127.0.0.1
mode = sign
key_table = refile:{dir}/etc/{keys}
signing_table = refile:{dir}/etc/{signing}
dns_test_file = {dir}/etc/dns.txt
"""
KEYS = "rsa planapulse.ai:rsa2026:{dir}/keys/rsa2026.private\n"


def write(st, name, text):
    with open(st.path("etc", name), "w") as f:
        f.write(text.replace("{dir}", st.dir))


def conf_for(st, name, signing, keys="key.table"):
    """A configuration of its own (its own port) with this SigningTable."""
    write(st, name + ".signing", signing)
    path = st.path("etc", name + ".conf")
    write(st, name + ".conf", CONF.format(port=st.port(name), dir=st.dir, keys=keys,
                                          signing=name + ".signing"))
    return path


def check(conf):
    res = run([mxdkim.MILTER, "-t", "-c", conf], timeout=60)
    return res.returncode, (res.stdout + res.stderr).strip()


def start(conf):
    """Start the daemon in the foreground: (exit code, output), or (None,
    output) when it was still running after 10 s (it started)."""
    p = subprocess.Popen([mxdkim.MILTER, "-f", "-c", conf], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = p.communicate(timeout=10)
        return p.returncode, out
    except subprocess.TimeoutExpired:
        p.terminate()
        out, _ = p.communicate(timeout=20)
        return None, out


def send(st, sender, token, envelope=None):
    raw = ("From: <%s>\r\nTo: <cust@example.net>\r\nSubject: %s\r\n"
           "Date: Tue, 01 Dec 2026 05:00:00 +0000\r\nMessage-ID: <%s@planapulse.ai>\r\n\r\n"
           "body %s\r\n" % (sender, token, token, token)).encode()
    s = smtplib.SMTP("127.0.0.1", st.port("postfix-smtp"), timeout=60)   # internal host
    s.sendmail(envelope or sender, ["cust@example.net"], raw)
    s.quit()
    return mxdkim.sunk(st, token)


def signed_by(msg, dns):
    """[(d=, dkimpy's verdict)] of each DKIM-Signature."""
    m = msg.encode()
    sigs = re.findall(rb"^DKIM-Signature:.*?(?=^\S)", m, re.M | re.S)
    d = dkim.DKIM(m)
    return [(re.search(rb"\bd=([^;\s]+)", s).group(1).decode(), d.verify(idx=i,
             dnsfunc=dns.dnsfunc)) for i, s in enumerate(sigs)]


UNALIGNED = [("*planapulse.ai rsa\n", "*planapulse.ai (matches evilplanapulse.ai)"),
             ("* rsa\n", "* (every sender)"),
             ("*@*.ai rsa\n", "*@*.ai (every .ai domain)"),
             ("*@planapulse.ai*  rsa\n", "*@planapulse.ai* (planapulse.ai.evil.example)")]
ALIGNED = [("*.planapulse.ai rsa\n", "*.planapulse.ai"),
           ("*@*.planapulse.ai rsa\n*@planapulse.ai rsa\n", "*@*.planapulse.ai"),
           ("*@planapulse.ai rsa\nb*@planapulse.ai rsa\n", "'*' only in the local part")]


def test_patterns(st):
    """1. -t and the start refuse a wildcard domain that can match
    unaligned domains."""
    for i, (signing, name) in enumerate(UNALIGNED):
        conf = conf_for(st, "bad%d" % i, signing)
        rc, out = check(conf)
        tap.ok(rc != 0 and "also matches domains that do not align with it" in out
               and '"*@planapulse.ai" for the domain and "*@*.planapulse.ai" for its '
               'subdomains' in out, "-t refuses SigningTable pattern %s" % name, diag=out)
        rc, out = start(conf)
        tap.ok(rc not in (None, 0) and "also matches domains that do not align" in out,
               "the start refuses it too", diag="exit %s: %s" % (rc, out[-600:]))
    for i, (signing, name) in enumerate(ALIGNED):
        rc, out = check(conf_for(st, "good%d" % i, signing))
        tap.is_(rc, 0, "-t accepts pattern %s" % name, diag=out)


def test_signing(st, dns):
    """1b. what an accepted table signs."""
    token = uuid.uuid4().hex
    msg = send(st, "billing@mail.planapulse.ai", token)
    tap.is_(signed_by(msg, dns) if msg else None, [("planapulse.ai", True)],
            "From: a subdomain (pattern *@*.planapulse.ai): signed d=planapulse.ai, "
            "dkimpy verifies")
    token = uuid.uuid4().hex
    msg = send(st, "billing@evilplanapulse.ai", token)
    tap.ok(msg and "DKIM-Signature" not in msg, "From: evilplanapulse.ai: not signed")
    token = uuid.uuid4().hex
    msg = send(st, "big@planapulse.ai", token)
    tap.is_(signed_by(msg, dns) if msg else None, [("planapulse.ai", True)] * 2,
            "a 4096-bit key (and the 2048-bit one) sign big@planapulse.ai; dkimpy verifies")
    tap.ok(len(re.search(r"(?m)^big2026\._domainkey\.planapulse\.ai (.*)$",
                         open(dns.path).read()).group(1)) < 1024,
           "(the 4096-bit key's record is shorter than the 1 KB libopendkim reads)")


def test_key_size(st):
    """2. keys over 4096 bits."""
    d = st.path("keys8192")
    os.makedirs(d, exist_ok=True)
    res = run([mxdkim.KEYGEN, "-d", "planapulse.ai", "-s", "k8192", "-b", "8192", "-D", d],
              timeout=300)
    tap.ok(res.returncode != 0 and "1024 to 4096 bits" in res.stderr
           and "1 KB key record" in res.stderr and not os.listdir(d),
           "milter-dkim-keygen -b 8192: refused, saying why, no file written",
           diag=res.stderr[-400:])
    res = run([mxdkim.KEYGEN, "rotate", "-d", "planapulse.ai", "-b", "8192"], timeout=300)
    tap.ok(res.returncode != 0 and "1024 to 4096 bits" in res.stderr,
           "milter-dkim-keygen rotate -b 8192: refused", diag=res.stderr[-400:])
    pem = subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                          "rsa_keygen_bits:8192"], capture_output=True, check=True).stdout
    path = os.path.join(d, "k8192.private")
    with open(path, "wb") as f:
        f.write(pem)
    os.chmod(path, 0o600)
    write(st, "key8192.table", KEYS + "k8192 planapulse.ai:k8192:%s\n" % path)
    conf = conf_for(st, "k8192", "*@planapulse.ai rsa,k8192\n", keys="key8192.table")
    rc, out = check(conf)
    tap.ok(rc != 0 and "RSA key longer than 4096 bits" in out and "dkim=permerror" in out
           and "PRIVATE" not in out, "-t refuses an 8192-bit key, says why, shows no key",
           diag=out[-600:])
    rc, out = start(conf)
    tap.ok(rc not in (None, 0) and "RSA key longer than 4096 bits" in out,
           "the start refuses it too", diag="exit %s: %s" % (rc, out[-600:]))


TEMPLATES = [
    ("%:rsa2026:{dir}/keys/big2026.private\nplanapulse.ai:rsa2026:{dir}/keys/rsa2026.private\n",
     True, "'%' row first, fixed planapulse.ai row with another key"),
    ("planapulse.ai:rsa2026:{dir}/keys/rsa2026.private\n%:rsa2026:{dir}/keys/big2026.private\n",
     True, "fixed row first, then the '%' row"),
    ("%:RSA2026:{dir}/keys/big2026.private\nplanapulse.ai:rsa2026:{dir}/keys/rsa2026.private\n",
     True, "selectors differing in case"),
    ("mail.%:rsa2026:{dir}/keys/big2026.private\n"
     "mail.planapulse.ai:rsa2026:{dir}/keys/rsa2026.private\n", True,
     "'mail.%' and a fixed mail.planapulse.ai"),
    ("mail.%:rsa2026:{dir}/keys/big2026.private\nplanapulse.ai:rsa2026:{dir}/keys/rsa2026.private\n",
     False, "'mail.%' cannot make planapulse.ai"),
    ("%:rsa2026:{dir}/keys/rsa2026.private\nplanapulse.ai:rsa2026:{dir}/keys/rsa2026.private\n",
     False, "the same key in both rows"),
    ("%:pct2026:{dir}/keys/big2026.private\nplanapulse.ai:rsa2026:{dir}/keys/rsa2026.private\n",
     False, "the '%' row with a selector of its own"),
]


def test_templates(st):
    """3. a '%' row and another row with one selector and two keys."""
    for i, (rows, bad, name) in enumerate(TEMPLATES):
        a, b = rows.splitlines()
        write(st, "pct%d.table" % i, "a %s\nb %s\n" % (a, b))
        signing = "* a\n*@planapulse.ai b\n" if a.startswith(("%", "mail.%")) else \
            "*@planapulse.ai a\n* b\n"
        conf = conf_for(st, "pct%d" % i, signing, keys="pct%d.table" % i)
        rc, out = check(conf)
        if not bad:
            tap.is_(rc, 0, "-t accepts: %s" % name, diag=out)
            continue
        tap.ok(rc != 0 and "with another key than line" in out
               and "DNS publishes one key per selector" in out,
               "-t refuses: %s" % name, diag=out[-600:])
        rc, out = start(conf)
        tap.ok(rc not in (None, 0) and "with another key than line" in out,
               "the start refuses it too", diag="exit %s: %s" % (rc, out[-600:]))


def test_bad_dname(st, dns):
    """5. a '%' row's d= that is no DNS name."""
    token = uuid.uuid4().hex
    msg = send(st, "a@sub.plana.solutions", token, envelope="a@planapulse.ai")
    tap.is_(signed_by(msg, dns) if msg else None, [("sub.plana.solutions", True)],
            "'%' row: From: a@sub.plana.solutions signed d=sub.plana.solutions, verifies")
    long1 = "l" * 64 + ".plana.solutions"
    long2 = ".".join(["a" * 60] * 3) + "." + "b" * 55 + ".plana.solutions"
    for domain, name in ((long1, "a 64-octet label"),
                         (long2, "a 253-octet domain (pct2026._domainkey.d: 274)")):
        token = uuid.uuid4().hex
        msg = send(st, "a@" + domain, token, envelope="a@planapulse.ai")
        tap.ok(msg and "DKIM-Signature" not in msg, "From: domain with %s: delivered "
               "unsigned, not with a signature no verifier can check" % name,
               diag=(msg or "not delivered")[:600])
        tap.ok(wait_for(lambda: "not signed as %s (s=pct2026): it is not a DNS name"
                        % domain[:300] in st.read_log("milter"), timeout=5),
               "the reason is logged")


UNSIGNABLE = [("sign_headers", "From, Authentication-Results"),
              ("sign_headers", "From, dkim-signature"),
              ("oversign_headers", "From, DKIM-Signature"),
              ("oversign_headers", "authentication-results")]


def test_unsignable(st):
    """4. headers whose signature is certain to fail."""
    for i, (param, value) in enumerate(UNSIGNABLE):
        conf = conf_for(st, "unsignable%d" % i, "*@planapulse.ai rsa\n")
        with open(conf, "a") as f:
            f.write("%s = %s\n" % (param, value))
        rc, out = check(conf)
        tap.ok(rc != 0 and "cannot be signed" in out and param in out,
               "-t refuses %s = %s" % (param, value), diag=out[-600:])
        rc, out = start(conf)
        tap.ok(rc not in (None, 0) and "cannot be signed" in out,
               "the start refuses it too", diag="exit %s: %s" % (rc, out[-600:]))


with Stack("milter-dkim-keys-attack") as st:
    tap.stack = st
    st.start_sink()
    dns = mxdkim.Dns(st.path("etc", "dns.txt"))
    mxdkim.keygen(st, dns, "planapulse.ai", "rsa2026", "rsa", 2048)
    big_path, _ = mxdkim.keygen(st, dns, "planapulse.ai", "big2026", "rsa", 4096)
    write(st, "key.table", KEYS + "big planapulse.ai:big2026:%s\n" % big_path
          + "pct %:pct2026:{dir}/keys/rsa2026.private\n")
    dns.records["pct2026._domainkey.sub.plana.solutions"] = \
        dns.records["rsa2026._domainkey.planapulse.ai"]
    dns.write()
    test_patterns(st)
    test_templates(st)
    test_unsignable(st)
    write(st, "main.signing", "*@planapulse.ai rsa\n*@*.planapulse.ai rsa\n"
          "big@planapulse.ai big\n*@*.plana.solutions pct\n")
    write(st, "main.conf", CONF.format(port="{port}", dir=st.dir, keys="key.table",
                                       signing="main.signing"))
    proc, port, conf = mxdkim.start_milter(st, "milter", open(st.path("etc", "main.conf"))
                                           .read())
    st.start_postfix(smtpd={"smtpd_milters": "inet:127.0.0.1:%d" % port,
                            "milter_default_action": "tempfail"})
    test_signing(st, dns)
    test_key_size(st)
    test_bad_dname(st, dns)
    tap.ok(proc.poll() is None, "milter-dkim is still running")

sys.exit(tap.done())
