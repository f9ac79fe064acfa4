#!/usr/bin/python3
"""Key rotation (milter-dkim-keygen rotate, --activate, --retire) and the DNS
self-check (milter-dkim -t --dns) against a real DNS server (knotd, t/lib/mxdns.py):

  1. rotate: a new RSA key under a dated selector, appended to the KeyTable
     marked pending (not signing), owned like the current key, mode 0600; the
     KeyTable keeps its mode and owner; the printed TXT record is the key's.
     A second rotate of the same domain and type is refused, nothing changed.
  2. The check, row by row, and --activate refusing whenever it is not
     "published and matching" (tables byte-identical after each refusal):
     NXDOMAIN and NODATA (missing), another key, k=ed25519 for an RSA key
     (different key), p= empty (revoked), bad base64 and h=sha1 (syntax
     error), a record in many small strings and two records of the same key
     (matching), a second record with another key (different key), t=s with
     h=sha256 (matching, noted), and the DNS server stopped or frozen
     (temporary DNS error, never "missing"); a new key the milter's user
     cannot read is not activated either.
  3. Concurrency: 8 rotates of 8 domains at once all land in the KeyTable
     (no lost update); 6 rotates of one domain at once: exactly one wins.
     The KeyTable's file system full: nothing changes, nothing is left.
  4. Property (hypothesis): for any KeyTable and SigningTable layout
     (comments, blank lines, tabs, trailing comments, CRLF, no final
     newline, several keys per row), rotate only appends one row and
     --activate changes only the key names in the rows and the markers:
     every other byte is kept.
  5. A full rotation of RSA and Ed25519 keys while mail flows through Postfix
     (a steady smtplib stream): rotate, publish, --activate (SIGHUP through
     the pid file), --retire (refused within the grace period, then -g 0).
     Every message is delivered (none tempfailed), carries one RSA and one
     Ed25519 signature, and every signature verifies with dkimpy querying the
     DNS server (dnspython); messages sent after the reload use only the new
     selectors. Afterwards -t --dns says every remaining row matches, and
     checks a '%' row under each domain its SigningTable rows spell out.
"""

import os
import re
import smtplib
import stat
import subprocess
import sys
import threading
import time
import uuid

import dkim
import dns.resolver
from hypothesis import given, settings, strategies as hs, HealthCheck

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack, free_port  # noqa: E402
from mxtest import tap, wait_for, run  # noqa: E402
from mxdns import Knot, txt  # noqa: E402
import mxdkim  # noqa: E402

DOMAIN = "rotate.test"
CONF = """\
socket = inet:{port}@127.0.0.1
mode = sign
key_table = refile:{dir}/etc/key.table
signing_table = refile:{dir}/etc/signing.table
pid_file = {dir}/run/milter.pid
dns_servers = {dns}
"""
KEYTABLE = """\
# KeyTable of the rotation test
rsa2025  rotate.test:rsa2025:{dir}/keys/rsa2025.private
ed2025   rotate.test:ed2025:{dir}/keys/ed2025.private
"""
SIGNING = "# who signs\n*@rotate.test  rsa2025, ed2025\n"


def value_of(bind):
    """The TXT value of milter-dkim-keygen's BIND text (strings joined)."""
    return "".join(re.findall(r'"([^"]*)"', bind))


def keygen(st, selector, kind, domain=DOMAIN):
    res = run([mxdkim.KEYGEN, "-d", domain, "-s", selector, "-t", kind, "-D",
               st.path("keys")])
    assert res.returncode == 0, res.stderr
    return value_of(res.stdout)


def read(path):
    with open(path, "rb") as f:
        return f.read()


class Rig:
    def __init__(self, st, knot, conf):
        self.st, self.knot, self.conf = st, knot, conf
        self.base = []                      # zone records always served

    def rotate(self, *args, conf=None):
        return run([mxdkim.KEYGEN, "rotate", "-c", conf or self.conf] + list(args),
                   timeout=120)

    def check(self):
        return run([mxdkim.MILTER, "-c", self.conf, "-t", "--dns"], timeout=120)

    def serve(self, records):
        self.knot.set_zone(DOMAIN, self.base + records)

    def tables(self):
        return read(self.st.path("etc", "key.table")), read(self.st.path("etc", "signing.table"))


def split_txt(owner, value, size):
    """A TXT record of many small character-strings."""
    parts = [value[i:i + size] for i in range(0, len(value), size)]
    return "%s TXT %s" % (owner, " ".join('"%s"' % p for p in parts))


def test_rotate(rig):
    st = rig.st
    os.chown(st.path("keys", "rsa2025.private"), 65534, 65534)
    os.chmod(st.path("etc", "key.table"), 0o640)
    os.chown(st.path("etc", "key.table"), 65534, 0)
    res = rig.rotate("-d", DOMAIN)
    tap.is_(res.returncode, 0, "rotate -d %s: a new key" % DOMAIN, diag=res.stderr)
    m = re.search(r"^((rsa-\d{8})\._domainkey\.%s)\.\s+IN\s+TXT" % re.escape(DOMAIN),
                  res.stdout, re.M)
    tap.ok(m is not None, "a dated selector and its TXT record printed", diag=res.stdout)
    name, sel = m.groups() if m else ("?", "?")
    path = st.path("keys", sel + ".private")
    info = os.stat(path) if os.path.exists(path) else None
    tap.ok(info and stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == 65534,
           "the key file is mode 0600 and owned like the key that signs now")
    table = read(st.path("etc", "key.table")).decode()
    tap.ok(re.search(r"^%s %s:%s:%s\t# rotate: pending since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"
                     % (re.escape(name), DOMAIN, sel, re.escape(path)), table, re.M)
           and table.startswith(KEYTABLE.replace("{dir}", st.dir)),
           "the row is appended, marked pending; the rows before are unchanged", diag=table)
    tap.is_(read(st.path("etc", "signing.table")).decode(), SIGNING,
            "the SigningTable is untouched (the new key does not sign yet)")
    info = os.stat(st.path("etc", "key.table"))
    tap.ok(stat.S_IMODE(info.st_mode) == 0o640 and info.st_uid == 65534,
           "the KeyTable keeps its mode and owner")
    pub = subprocess.run(["openssl", "pkey", "-in", path, "-pubout", "-outform", "DER"],
                         capture_output=True).stdout
    import base64
    tap.ok(("p=" + base64.b64encode(pub).decode()) in value_of(res.stdout),
           "the printed record carries the new key's public half")
    before = rig.tables()
    again = rig.rotate("-d", DOMAIN)
    tap.ok(again.returncode == 1 and "pending since" in again.stderr
           and rig.tables() == before and len(os.listdir(st.path("keys"))) == 6,
           "a second rotate of the same domain and type is refused, nothing changed",
           diag=again.stderr)
    return name, sel, value_of(res.stdout)


def row_line(text, name):
    """The -t --dns line of the row named name."""
    for line in text.splitlines():
        if re.match(r"^\S+key\.table:\d+: %s: " % re.escape(name), line):
            return line
    return ""


CASES = [
    # (what, records for the selector owner, verdict, and in the reason)
    ("NXDOMAIN", lambda o, v, w, e: [], "missing", "NXDOMAIN"),
    ("NODATA", lambda o, v, w, e: ["%s A 127.0.0.1" % o], "missing", "without a TXT"),
    ("another key", lambda o, v, w, e: [txt(o, w)], "different key", "another rsa key"),
    ("k=ed25519 for an RSA key", lambda o, v, w, e: [txt(o, e)], "different key", "k=ed25519"),
    ("p= empty", lambda o, v, w, e: [txt(o, "v=DKIM1; k=rsa; p=")], "revoked", "revoked"),
    ("bad base64", lambda o, v, w, e: [txt(o, v.replace("p=MII", "p=MII!*"))],
     "syntax error", "base64"),
    ("h=sha1", lambda o, v, w, e: [txt(o, v.replace("k=rsa;", "k=rsa; h=sha1;"))],
     "syntax error", "h=sha1"),
    ("a second record with another key", lambda o, v, w, e: [txt(o, v), txt(o, w)],
     "different key", "TXT records"),
]
GOOD = [
    ("many small strings", lambda o, v: [split_txt(o, v, 40)], ""),
    ("two records of the same key", lambda o, v: [txt(o, v), txt(o, v + ";")], "2 TXT records"),
    ("t=s with h=sha256", lambda o, v: [txt(o, v.replace("k=rsa;", "k=rsa; t=s; h=sha256;"))],
     "t=s"),
]


def test_check(rig, name, sel, value, wrong, edvalue):
    owner = "%s._domainkey" % sel
    before = rig.tables()
    for what, records, verdict, reason in CASES:
        rig.serve(records(owner, value, wrong, edvalue))
        line = row_line(rig.check().stdout, name)
        tap.ok(": %s (rsa)" % verdict in line and reason in line,
               "%s: -t --dns says %s for the row" % (what, verdict), diag=line)
        res = rig.rotate("--activate", "-d", DOMAIN)
        tap.ok(res.returncode == 1 and row_line(res.stdout, name) and "not activated"
               in res.stderr and rig.tables() == before,
               "%s: --activate names the row and refuses; tables unchanged" % what,
               diag=res.stdout + res.stderr)
    for what, records, note in GOOD:
        rig.serve(records(owner, value))
        line = row_line(rig.check().stdout, name)
        tap.ok(": published and matching (rsa)" in line and note in line,
               "%s: published and matching" % what, diag=line)
    rig.serve([txt(owner, value)])
    rig.knot.stop()
    res = rig.check()
    line = row_line(res.stdout, name)
    tap.ok(res.returncode == 1 and "temporary DNS error" in line and "missing" not in res.stdout,
           "DNS server stopped: temporary DNS error, not missing", diag=res.stdout)
    res = rig.rotate("--activate", "-d", DOMAIN)
    tap.ok(res.returncode == 1 and "temporary DNS error" in res.stdout
           and rig.tables() == before, "DNS server stopped: --activate refuses",
           diag=res.stdout + res.stderr)
    rig.knot.start()
    rig.knot.pause()
    t0 = time.monotonic()
    res = rig.rotate("--activate", "-d", DOMAIN)
    took = time.monotonic() - t0
    rig.knot.resume()
    tap.ok(res.returncode == 1 and "temporary DNS error" in res.stdout and took < 30
           and rig.tables() == before,
           "DNS server frozen: --activate refuses after a timeout (%.1fs)" % took,
           diag=res.stdout + res.stderr)


def test_concurrency(rig):
    st = rig.st
    conf2 = st.path("etc", "c.conf")
    with open(conf2, "w") as f:
        f.write("mode = sign\nkey_table = %s\nsigning_table = %s\ndns_test_file = %s\n" % (
            st.path("etc", "c.key"), st.path("etc", "c.sign"), st.path("etc", "c.dns")))
    with open(st.path("etc", "c.key"), "w") as f:
        f.write("# many writers\nfirst c0.test:first:%s\nfirst2 x.c0.test:first2:%s\n" % (
            st.path("keys", "rsa2025.private"), st.path("keys", "ed2025.private")))
    with open(st.path("etc", "c.sign"), "wb") as f:
        f.write(b"# CRLF lines\r\n*@c0.test first\r\n*@x.c0.test first,first2\r\n")
    with open(st.path("etc", "c.dns"), "w") as f:
        f.write("")
    os.makedirs(st.path("ckeys"), exist_ok=True)
    procs = [subprocess.Popen([mxdkim.KEYGEN, "rotate", "-c", conf2, "-d", "c%d.test" % i,
                               "-b", "1024", "-D", st.path("ckeys")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(1, 9)]
    codes = [p.wait(timeout=120) for p in procs]
    table = read(st.path("etc", "c.key")).decode()
    rows = re.findall(r"^\S+ (c\d)\.test:rsa-\d{8}(?:-\d)?:\S+\t# rotate: pending", table,
                      re.M)
    tap.ok(codes == [0] * 8 and sorted(rows) == ["c%d" % i for i in range(1, 9)]
           and table.startswith("# many writers\nfirst c0.test:"),
           "8 concurrent rotates of 8 domains: all 8 rows in the KeyTable", diag=table)
    procs = [subprocess.Popen([mxdkim.KEYGEN, "rotate", "-c", conf2, "-d", "c0.test",
                               "-b", "1024", "-D", st.path("ckeys")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(6)]
    codes = [p.wait(timeout=120) for p in procs]
    table = read(st.path("etc", "c.key")).decode()
    tap.ok(sorted(codes) == [0, 1, 1, 1, 1, 1]
           and len(re.findall(r"^\S+ c0\.test:rsa-", table, re.M)) == 1,
           "6 concurrent rotates of one domain: exactly one pending key", diag=table)
    res = run([mxdkim.MILTER, "-c", conf2, "-t"])
    tap.ok(res.returncode == 0 and "11 keys" in res.stdout,
           "the KeyTable written by 14 concurrent runs loads", diag=res.stdout + res.stderr)
    sel = re.search(r"c0\.test:(rsa-[0-9-]+):", table).group(1)
    with open(st.path("etc", "c.dns"), "w") as f:
        f.write("%s._domainkey.c0.test %s\n" % (sel, value_of(read(st.path(
            "ckeys", sel + ".txt")).decode())))
    res = rig.rotate("--activate", "-d", "c0.test", conf=conf2)
    new = "%s._domainkey.c0.test" % sel
    tap.ok(res.returncode == 0 and read(st.path("etc", "c.sign")) == (
        "# CRLF lines\r\n*@c0.test %s\r\n*@x.c0.test %s,first2\r\n" % (new, new)).encode(),
           "a SigningTable with CRLF lines: both rows switched, the CRLFs kept",
           diag=res.stdout + res.stderr + repr(read(st.path("etc", "c.sign"))))
    res = rig.rotate("-d", "c0.test", "-b", "1024", conf=conf2)
    sel2 = re.search(r"^(rsa-[0-9-]+)\._domainkey", res.stdout, re.M).group(1)
    new2 = "%s._domainkey.c0.test" % sel2
    with open(st.path("etc", "c.dns"), "w") as f:
        f.write("%s._domainkey.c0.test %s\n" % (sel2, value_of(res.stdout)))
    signing = read(st.path("etc", "c.sign")).replace(new.encode(), new2.encode())
    with open(st.path("etc", "c.sign"), "wb") as f:    # as if --activate stopped halfway
        f.write(signing)
    bystander = subprocess.Popen(["sleep", "120"])
    with open(st.path("run", "stale.pid"), "w") as f:
        f.write("%d\n" % bystander.pid)         # a pid file no milter holds locked
    res = rig.rotate("--activate", "-d", "c0.test", "-p", st.path("run", "stale.pid"),
                     conf=conf2)
    time.sleep(0.2)
    tap.ok(res.returncode == 1 and "stale (no milter-dkim holds it locked)" in res.stderr
           and bystander.poll() is None, "a stale pid file: no SIGHUP to whatever has that pid "
           "now, and the command says to reload by hand", diag=res.stderr)
    bystander.kill()
    bystander.wait()
    table = read(st.path("etc", "c.key")).decode()
    tap.ok("signs already" in res.stdout
           and re.search(r"^%s c0\.test:\S+\t# rotate: retiring since" % re.escape(new), table,
                         re.M) and re.search(r"^%s c0\.test:\S+$" % re.escape(new2), table, re.M),
           "--activate again after the SigningTable was switched alone: the rows are marked "
           "as a complete --activate would", diag=res.stdout + res.stderr + table)
    conf3 = st.path("etc", "c3.conf")
    with open(conf3, "w") as f:                    # the milter would run as nobody
        f.write(read(conf2).decode() + "user = nobody\n")
    res = rig.rotate("-d", "c0.test", "-b", "1024", conf=conf3)
    sel3 = re.search(r"^(rsa-[0-9-]+)\._domainkey", res.stdout, re.M).group(1)
    with open(st.path("etc", "c.dns"), "w") as f:
        f.write("%s._domainkey.c0.test %s\n" % (sel3, value_of(res.stdout)))
    key3 = st.path("ckeys", sel3 + ".private")
    tap.is_(os.stat(key3).st_uid, 65534, "the new key is owned like the key it replaces")
    os.chown(key3, 0, 0)                           # as if made by hand, as root
    before = read(st.path("etc", "c.key")), read(st.path("etc", "c.sign"))
    res = rig.rotate("--activate", "-d", "c0.test", conf=conf3)
    tap.ok(res.returncode == 1 and "user nobody (milter-dkim's) cannot read" in res.stdout
           and (read(st.path("etc", "c.key")), read(st.path("etc", "c.sign"))) == before,
           "a new key the milter's user cannot read: not activated (its reload would fail and "
           "the old key sign on)", diag=res.stdout + res.stderr)
    os.chown(key3, 65534, 65534)
    res = rig.rotate("--activate", "-d", "c0.test", conf=conf3)
    tap.ok(res.returncode == 0 and ("%s._domainkey.c0.test" % sel3).encode()
           in read(st.path("etc", "c.sign")), "readable by it: activated",
           diag=res.stdout + res.stderr)
    tap.is_(sorted(f for f in os.listdir(st.path("etc")) if f.startswith(".")), [],
            "no temporary file left behind")


def test_property(st):
    """rotate and --activate keep every byte they do not mean to change."""
    d = st.path("prop")
    os.makedirs(os.path.join(d, "keys"), exist_ok=True)
    for sel, dom in (("old", DOMAIN), ("k2", "other.test")):
        run([mxdkim.KEYGEN, "-d", dom, "-s", sel, "-t", "ed25519", "-D", os.path.join(d, "keys")])
    conf = os.path.join(d, "p.conf")
    with open(conf, "w") as f:
        f.write("key_table = %s/key.table\nsigning_table = %s/signing.table\n"
                "dns_test_file = %s/dns.txt\n" % (d, d, d))
    kpath = os.path.join(d, "keys")
    text = hs.text(hs.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=20)
    filler = hs.one_of(text.map(lambda t: "#" + t), hs.sampled_from(["", " ", "\t"]))
    ws = hs.sampled_from([" ", "\t", "  ", " \t "])
    sep = hs.sampled_from([",", ", ", " ,", ",\t", " "])
    counter = [0]

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(hs.lists(filler, max_size=4), hs.lists(filler, max_size=4), ws, ws,
           hs.sampled_from(["", " # note", "\t#x", "  "]), sep, hs.booleans(), hs.booleans(),
           hs.integers(0, 4), hs.sampled_from(["*@rotate.test", "rotate.test"]))
    def prop(kfill, sfill, ws1, ws2, trail, sep1, crlf, final, at, pattern):
        counter[0] += 1
        for f in os.listdir(kpath):
            if not f.startswith(("old.", "k2.")):
                os.unlink(os.path.join(kpath, f))
        nl = "\r\n" if crlf else "\n"
        old_row = "old%s%s:old:%s/old.private%s" % (ws1, DOMAIN, kpath, trail)
        krows = kfill[:at] + [old_row] + kfill[at:] + ["k2 other.test:k2:%s/k2.private" % kpath]
        srows = sfill[:at] + ["%s%sold%sk2" % (pattern, ws2, sep1)] + sfill[at:] + \
            ["*@other.test k2", "*@x.rotate.test%sold" % ws2]
        ktext = nl.join(krows) + (nl if final else "")
        stext = nl.join(srows) + (nl if final else "")
        if crlf and not krows[0]:
            krows[0] = "# first"               # the first line says CRLF
            ktext = nl.join(krows) + (nl if final else "")
        for name, t in (("key.table", ktext), ("signing.table", stext), ("dns.txt", "")):
            with open(os.path.join(d, name), "w", newline="") as f:
                f.write(t)
        res = run([mxdkim.KEYGEN, "rotate", "-c", conf, "-d", DOMAIN, "-t", "ed25519"])
        new_ktext = read(os.path.join(d, "key.table")).decode()
        m = re.match(re.escape(ktext + ("" if final else nl)) +
                     r"((ed25519-\d{8})\._domainkey\.rotate\.test) rotate\.test:\2:"
                     + re.escape(kpath) + r"/\2\.private\t# rotate: pending since \S+Z"
                     + re.escape(nl) + r"$", new_ktext)
        assert res.returncode == 0 and m, (res.stderr, ktext, new_ktext)
        assert read(os.path.join(d, "signing.table")).decode() == stext
        name, sel = m.groups()
        with open(os.path.join(d, "dns.txt"), "w") as f:
            f.write("%s._domainkey.%s %s\n" % (sel, DOMAIN, value_of(read(os.path.join(
                kpath, sel + ".txt")).decode())))
        res = run([mxdkim.KEYGEN, "rotate", "--activate", "-c", conf, "-d", DOMAIN])
        assert res.returncode == 0, res.stdout + res.stderr
        want = nl.join(srows[:len(sfill[:at])] + ["%s%s%s%sk2" % (pattern, ws2, name, sep1)]
                       + sfill[at:] + ["*@other.test k2", "*@x.rotate.test%s%s" % (ws2, name)]) \
            + (nl if final else "")
        got = read(os.path.join(d, "signing.table")).decode()
        assert got == want, (want, got)
        got = read(os.path.join(d, "key.table")).decode()
        want = re.escape(new_ktext).replace(
            re.escape(old_row), re.escape(old_row.rstrip(" \t")) + r"\t# rotate: retiring since "
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ").replace(
            re.escape(new_ktext[m.start(1):].split(nl)[0]),
            re.escape(new_ktext[m.start(1):].split("\t# rotate:")[0]))
        assert re.fullmatch(want, got), (new_ktext, got)

    try:
        prop()
        tap.ok(counter[0] >= 20, "property: rotate and --activate change only what they mean "
               "to, for any table layout (%d examples)" % counter[0])
    except AssertionError as e:
        tap.ok(False, "property: rotate and --activate keep every other byte", diag=str(e)[:3000])


def test_disk_full(rig):
    """The KeyTable's file system full: the rotate fails, the table is as it
    was, the new key files are removed, no temporary file is left."""
    st = rig.st
    full = st.path("full")
    os.makedirs(full, exist_ok=True)
    mounted = run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", full])
    if not tap.ok(mounted.returncode == 0, "a 16 KB tmpfs for the KeyTable", diag=mounted.stderr):
        return
    try:
        conf = os.path.join(full, "f.conf")
        with open(conf, "w") as f:
            f.write("key_table = %s/key.table\nsigning_table = %s/signing.table\n" % (full, full))
        with open(os.path.join(full, "key.table"), "w") as f:
            f.write("first c0.test:first:%s\n" % st.path("keys", "rsa2025.private"))
        with open(os.path.join(full, "signing.table"), "w") as f:
            f.write("*@c0.test first\n")
        before = read(os.path.join(full, "key.table"))
        with open(os.path.join(full, "filler"), "wb") as f:
            try:
                f.write(b"x" * 65536)
            except OSError:
                pass
        keys_before = sorted(os.listdir(st.path("ckeys")))
        res = rig.rotate("-d", "c0.test", "-b", "1024", "-D", st.path("ckeys"), conf=conf)
        tap.ok(res.returncode == 1 and "No space left on device" in res.stderr
               and "the new key files are removed" in res.stderr
               and read(os.path.join(full, "key.table")) == before
               and sorted(os.listdir(st.path("ckeys"))) == keys_before
               and sorted(os.listdir(full)) == ["f.conf", "filler", "key.table", "signing.table"],
               "disk full under the KeyTable: refused, the table as it was, no key file and no "
               "temporary file left", diag=res.stderr)
    finally:
        run(["umount", "-l", full])


class Sender(threading.Thread):
    """A steady stream of messages through Postfix's smtpd (internal client)."""

    def __init__(self, st):
        super().__init__(daemon=True)
        self.st, self.stop, self.sent = st, threading.Event(), []

    def run(self):
        while not self.stop.is_set():
            try:
                s = smtplib.SMTP("127.0.0.1", self.st.port("postfix-smtp"), timeout=30)
                s.ehlo("client.rotate.test")
                for _ in range(5):
                    token = uuid.uuid4().hex
                    t0 = time.monotonic()
                    body = ("From: <noreply@rotate.test>\r\nTo: <cust@example.net>\r\n"
                            "Subject: flow %s\r\nMessage-ID: <%s@rotate.test>\r\n\r\n"
                            "message %s\r\n" % (token, token, token)).encode()
                    try:
                        s.sendmail("noreply@rotate.test", ["cust@example.net"], body)
                        self.sent.append((token, t0, 250))
                    except smtplib.SMTPResponseException as e:
                        self.sent.append((token, t0, e.smtp_code))
                    time.sleep(0.02)
                s.quit()
            except (OSError, smtplib.SMTPException) as e:
                self.sent.append(("connection", time.monotonic(), str(e)))


def dnsfunc_for(knot):
    def dnsfunc(name, timeout=5):
        r = dns.resolver.Resolver(configure=False)
        r.nameservers, r.port, r.lifetime = ["127.0.0.1"], knot.port, timeout
        name = name.decode() if isinstance(name, bytes) else name
        try:
            ans = r.resolve(name.rstrip("."), "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        return b"".join(ans[0].strings)
    return dnsfunc


def selectors(message):
    return sorted(re.findall(rb"\bs=([A-Za-z0-9._-]+)", b"".join(
        re.findall(rb"^DKIM-Signature:.*?(?=^\S)", message, re.M | re.S))))


def test_flow(rig, proc, rsa_sel, rsa_value, old):
    st = rig.st
    sender = Sender(st)
    sender.start()
    wait_for(lambda: len(sender.sent) >= 20, timeout=30)
    res = rig.rotate("-d", DOMAIN, "-t", "ed25519")
    tap.is_(res.returncode, 0, "during the flow: rotate -t ed25519", diag=res.stderr)
    ed_sel = re.search(r"^(ed25519-\d{8})\._domainkey", res.stdout, re.M).group(1)
    new = [txt(rsa_sel + "._domainkey", rsa_value),
           txt(ed_sel + "._domainkey", value_of(res.stdout))]
    rig.serve(new)                            # publish both next keys
    reloads = st.read_log("milter").count("configuration reloaded")
    res = rig.rotate("--activate", "-d", DOMAIN)
    tap.ok(res.returncode == 0 and "sent SIGHUP to milter-dkim (pid %d)" % proc.pid in res.stdout
           and res.stdout.count(": published and matching (") == 2,
           "--activate: both pending keys checked in DNS, SigningTable switched, SIGHUP sent",
           diag=res.stdout + res.stderr)
    tap.ok(re.search(r"keep the TXT record rsa2025\._domainkey\.rotate\.test published until "
                     r"at least \d{4}-", res.stdout), "it says how long the old record stays")
    tap.ok(wait_for(lambda: st.read_log("milter").count("configuration reloaded") > reloads),
           "the milter reloaded")
    t_reload = time.monotonic()
    signing = read(st.path("etc", "signing.table")).decode()
    tap.is_(signing, SIGNING.replace("rsa2025", "%s._domainkey.%s" % (rsa_sel, DOMAIN))
            .replace("ed2025", "%s._domainkey.%s" % (ed_sel, DOMAIN)),
            "the SigningTable row names the new keys, its formatting kept")
    wait_for(lambda: len([s for s in sender.sent if s[1] > t_reload]) >= 20, timeout=30)
    res = rig.rotate("--retire", "-d", DOMAIN)
    tap.ok(res.returncode == 1 and "must stay published until" in res.stderr,
           "--retire within the grace period is refused", diag=res.stderr)
    res = rig.rotate("--retire", "-d", DOMAIN, "-g", "7")
    tap.ok(res.returncode == 1 and "give a unit" in res.stderr,
           "--retire -g 7 (seconds, or days?) is refused", diag=res.stderr)
    res = rig.rotate("--retire", "-d", DOMAIN, "-g", "0")
    tap.ok(res.returncode == 0 and "the TXT record rsa2025._domainkey.rotate.test may be removed"
           in res.stdout and "the TXT record ed2025._domainkey.rotate.test may be removed"
           in res.stdout, "--retire -g 0 names the TXT records that may go",
           diag=res.stdout + res.stderr)
    table = read(st.path("etc", "key.table")).decode()
    tap.ok("rsa2025" not in table and "ed2025" not in table and "rotate:" not in table,
           "the old rows are gone, the new ones unmarked", diag=table)
    time.sleep(1)
    sender.stop.set()
    sender.join(timeout=60)
    return sender.sent, t_reload, ed_sel, old + new


def verify_flow(rig, sent, t_reload, rsa_sel, ed_sel):
    st = rig.st
    bad = [s for s in sent if s[2] != 250]
    tap.ok(len(sent) >= 60 and not bad, "%d messages sent during the rotation, every one "
           "accepted (none tempfailed)" % len(sent), diag=repr(bad[:5]))
    tokens = {s[0] for s in sent}
    got = wait_for(lambda: len(st.sink_messages()) >= len(sent) and st.sink_messages(),
                   timeout=60) or []
    by_token = {}
    for m in got:
        t = re.search(r"flow ([0-9a-f]{32})", m)
        if t:
            by_token.setdefault(t.group(1), []).append(m)
    tap.ok(set(by_token) == tokens and all(len(v) == 1 for v in by_token.values()),
           "every message reached the sink exactly once (%d)" % len(by_token))
    dnsfunc = dnsfunc_for(rig.knot)
    failed, late_old, sels_seen = [], [], set()
    for token, t0, _ in sent:
        msg = mxdkim.crlf(mxdkim.strip_sink_headers(by_token.get(token, [""])[0]))
        sels = selectors(msg)
        sels_seen.update(sels)
        d = dkim.DKIM(msg)
        if len(sels) != 2 or not all(d.verify(idx=i, dnsfunc=dnsfunc) for i in range(2)):
            failed.append((token, sels))
        if t0 > t_reload and sels != sorted([ed_sel.encode(), rsa_sel.encode()]):
            late_old.append((token, sels))
    tap.ok(not failed, "every message has two signatures (RSA, Ed25519) and both verify "
           "with dkimpy against the DNS server", diag=repr(failed[:5]))
    tap.ok(not late_old, "messages sent after the reload use only the new selectors",
           diag=repr(late_old[:5]))
    tap.ok({b"rsa2025", b"ed2025", rsa_sel.encode(), ed_sel.encode()} <= sels_seen,
           "the stream saw the old and the new keys", diag=repr(sels_seen))


def test_container_group(st):
    """A container's milter: no user setting, its own uid (10001) and group
    (fsGroup 10001), the key root:10001 0440; the operator rotates as root.
    The new key must be readable by that group, as the current one is,
    and --activate must refuse a key the running milter cannot read
    (checked with the running process's uid and groups)."""
    base = st.path("k8s")
    os.chmod(st.dir, os.stat(st.dir).st_mode | 0o711)     # uid 10001 passes through
    for d in ("keys", "etc", "run"):
        os.makedirs(os.path.join(base, d), exist_ok=True)
    os.chown(os.path.join(base, "keys"), 0, 10001)
    os.chmod(os.path.join(base, "keys"), 0o2750)
    os.chown(os.path.join(base, "run"), 10001, 10001)
    res = run([mxdkim.KEYGEN, "-d", "k8s.test", "-s", "cur", "-D", os.path.join(base, "keys")])
    key = os.path.join(base, "keys", "cur.private")
    os.chown(key, 0, 10001)
    os.chmod(key, 0o440)
    etc = os.path.join(base, "etc")
    with open(os.path.join(etc, "dns"), "w") as f:
        f.write("cur._domainkey.k8s.test %s\n" % value_of(res.stdout))
    with open(os.path.join(etc, "key"), "w") as f:
        f.write("cur k8s.test:cur:%s\n" % key)
    with open(os.path.join(etc, "sign"), "w") as f:
        f.write("*@k8s.test cur\n")
    conf = os.path.join(etc, "m.conf")
    with open(conf, "w") as f:
        f.write("mode = sign\nsocket = inet:%d@127.0.0.1\nkey_table = %s/key\n"
                "signing_table = refile:%s/sign\ndns_test_file = %s/dns\n"
                "pid_file = %s/run/m.pid\n" % (free_port(), etc, etc, etc, base))
    for path in (base, etc) + tuple(os.path.join(etc, n) for n in ("dns", "key", "sign", "m.conf")):
        os.chmod(path, 0o755 if os.path.isdir(path) else 0o644)
    as_pod = ["setpriv", "--reuid=10001", "--regid=10001", "--groups=10001"]
    log = open(os.path.join(base, "milter.log"), "w")
    milter = subprocess.Popen(as_pod + [mxdkim.MILTER, "-f", "-c", conf], stdout=log,
                              stderr=subprocess.STDOUT)
    try:
        if not tap.ok(wait_for(lambda: os.path.exists(os.path.join(base, "run", "m.pid")),
                               timeout=10), "container milter (uid 10001, no user) started",
                      diag=read(os.path.join(base, "milter.log")).decode()):
            return
        res = run([mxdkim.KEYGEN, "rotate", "-c", conf, "-d", "k8s.test", "-b", "1024"])
        sel = re.search(r"^(rsa-[0-9-]+)\._domainkey", res.stdout, re.M)
        if not tap.ok(res.returncode == 0 and sel, "rotate as root", diag=res.stdout + res.stderr):
            return
        new = os.path.join(base, "keys", sel.group(1) + ".private")
        mode = os.stat(new)
        tap.is_((mode.st_uid, mode.st_gid, oct(mode.st_mode & 0o777)), (0, 10001, "0o640"),
                "the new key is readable by the group the current one is readable by "
                "(was 0600: the milter could not read it)")
        with open(os.path.join(etc, "dns"), "a") as f:
            f.write("%s._domainkey.k8s.test %s\n" % (sel.group(1), value_of(res.stdout)))
        os.chmod(new, 0o600)                   # as a careless copy would leave it
        res = run([mxdkim.KEYGEN, "rotate", "--activate", "-c", conf, "-d", "k8s.test"])
        tap.ok(res.returncode == 1 and re.search(r"the running milter-dkim \(pid \d+\) cannot "
                                                 r"read \S+: Permission denied", res.stdout)
               and "cur" in read(os.path.join(etc, "sign")).decode(),
               "a key the running milter (uid 10001, no user setting) cannot read: not "
               "activated (was: activated, then the reload and every restart failed)",
               diag=res.stdout + res.stderr)
        os.chmod(new, 0o640)
        mark = len(read(os.path.join(base, "milter.log")))
        res = run([mxdkim.KEYGEN, "rotate", "--activate", "-c", conf, "-d", "k8s.test"])
        tap.ok(res.returncode == 0 and wait_for(
            lambda: b"configuration reloaded: 2 keys" in read(os.path.join(base, "milter.log"))[mark:],
            timeout=10), "readable: activated, and the milter reloaded with the new key",
            diag=res.stdout + res.stderr + read(os.path.join(base, "milter.log")).decode())
        res = run(as_pod + [mxdkim.MILTER, "-t", "-c", conf])
        tap.is_(res.returncode, 0, "-t as the container's user passes after the rotation",
                diag=res.stdout + res.stderr)
    finally:
        milter.terminate()
        milter.wait(timeout=20)
        log.close()


with Stack("milter-dkim-rotate") as st:
    tap.stack = st
    os.makedirs(st.path("keys"), exist_ok=True)
    os.makedirs(st.path("run"), exist_ok=True)
    old = [txt("rsa2025._domainkey", keygen(st, "rsa2025", "rsa")),
           txt("ed2025._domainkey", keygen(st, "ed2025", "ed25519"))]
    wrong = keygen(st, "wrong", "rsa", "elsewhere.test")
    edvalue = keygen(st, "edwrong", "ed25519", "elsewhere.test")
    for f in ("wrong", "edwrong"):
        os.unlink(st.path("keys", f + ".private"))
        os.unlink(st.path("keys", f + ".txt"))
    knot = Knot(st, {DOMAIN: old})
    knot.start()
    with open(st.path("etc", "key.table"), "w") as f:
        f.write(KEYTABLE.replace("{dir}", st.dir))
    with open(st.path("etc", "signing.table"), "w") as f:
        f.write(SIGNING)
    rig = Rig(st, knot, None)
    rig.base = old
    res = None
    proc, port, conf = mxdkim.start_milter(st, "milter", CONF.replace("{dns}", knot.servers))
    rig.conf = conf
    res = rig.check()
    tap.ok(res.returncode == 0 and res.stdout.count(": published and matching (") == 2
           and "published and matching (ed25519)" in res.stdout,
           "-t --dns: the RSA and the Ed25519 key are published and matching",
           diag=res.stdout + res.stderr)
    name, rsa_sel, rsa_value = test_rotate(rig)
    test_check(rig, name, rsa_sel, rsa_value, wrong, edvalue)
    test_concurrency(rig)
    test_property(st)
    test_disk_full(rig)
    test_container_group(st)
    milter = {"smtpd_milters": "inet:127.0.0.1:%d" % port, "milter_default_action": "tempfail"}
    st.start_sink()
    st.start_postfix(smtpd=milter)
    rig.serve([])
    sent, t_reload, ed_sel, zone = test_flow(rig, proc, rsa_sel, rsa_value, old)
    verify_flow(rig, sent, t_reload, rsa_sel, ed_sel)
    knot.set_zone(DOMAIN, zone[2:])           # the retired records go
    res = rig.check()
    tap.ok(res.returncode == 0 and res.stdout.count(": published and matching (") == 2
           and "every key checked is published and matching" in res.stdout,
           "after the rotation -t --dns: both new keys published and matching",
           diag=res.stdout + res.stderr)
    shared = keygen(st, "shared", "rsa")
    knot.set_zone(DOMAIN, zone[2:] + [txt("shared._domainkey", shared)])
    knot.add_zone("other.test", [txt("shared._domainkey", wrong)])
    with open(st.path("etc", "key.table"), "a") as f:
        f.write("shared %%:shared:%s\n" % st.path("keys", "shared.private"))
    with open(st.path("etc", "signing.table"), "a") as f:
        f.write("*@rotate.test shared\nother.test shared\n*@*.example shared\n")
    res = rig.check()
    tap.ok(res.returncode == 1 and re.search(r"key\.table:\d+: shared \(shared\._domainkey\."
                                             r"rotate\.test\): published and matching \(rsa\)",
                                             res.stdout)
           and re.search(r"key\.table:\d+: shared \(shared\._domainkey\.other\.test\): "
                         r"different key \(rsa\)", res.stdout)
           and res.stdout.count("shared (") == 2,
           "a '%' row is checked under each domain its SigningTable rows spell out",
           diag=res.stdout + res.stderr)
    tap.ok(proc.poll() is None, "milter-dkim is still running")

sys.exit(tap.done())
