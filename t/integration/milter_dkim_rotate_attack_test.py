#!/usr/bin/python3
"""milter-dkim-keygen rotate --activate and milter-dkim -t --dns, attacked
with the DNS layouts operators really have, against a real DNS server
(knotd, t/lib/mxdns.py). The promise: a pending key is activated only when
DNS publishes exactly its key at its selector, as a verifier would read it.

  1. CNAME'd selectors (as hosted-DNS and ESP setups delegate them): a
     CNAME to a TXT record with another key, to a name that does not exist,
     into a zone nobody serves (SERVFAIL), a CNAME loop; each is refused
     with the tables byte-identical. A CNAME to the right key is published
     and matching.
  2. A wildcard *._domainkey TXT record with another key answers for the
     new selector: refused. A second, non-DKIM TXT record beside the right
     one (a verifier may pick either): refused.
  3. Strings split inside a tag name and inside p=, unknown tags and n=
     notes: matching, as RFC 6376 3.6.2.2 concatenates the strings.
  4. A planted symbolic link at the next selector's key file path (a key
     directory writable by another user): rotate neither writes through it
     nor leaves the target; the key it writes is mode 0600 under umask 0.
  5. Two resolvers in dns_servers that disagree (one still answers from
     before the record was published, as a lagging secondary or a stale
     cache does): the milter asks either for every lookup, so -t --dns and
     --activate must ask each and refuse while any says missing (10 tries,
     each refused, tables unchanged).
  6. Finally the CNAME'd record of the right key activates: the
     SigningTable names the new key and milter-dkim -t loads the tables.
     The pid file given with -p is locked, but by a process that is not
     milter-dkim and names another process (a `sleep`, standing for any
     daemon a process of the milter's user would have root signal): that
     process is not sent SIGHUP (which would have killed it); the command
     says to reload by hand and exits 1, the tables written.
"""

import fcntl
import os
import re
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxstack import Stack  # noqa: E402
from mxtest import tap, run  # noqa: E402
from mxdns import Knot, txt  # noqa: E402
import mxdkim  # noqa: E402

DOMAIN = "cname.test"
ESP = "esp.test"
CONF = """\
socket = inet:{port}@127.0.0.1
mode = sign
key_table = refile:{dir}/etc/key.table
signing_table = refile:{dir}/etc/signing.table
dns_servers = %s
"""
KEYTABLE = "old  cname.test:old:{dir}/keys/old.private\n"
SIGNING = "*@cname.test old\n"


def value_of(bind):
    return "".join(re.findall(r'"([^"]*)"', bind))


def keygen(st, selector, domain=DOMAIN, directory="keys"):
    res = run([mxdkim.KEYGEN, "-d", domain, "-s", selector, "-b", "1024", "-D",
               st.path(directory)])
    assert res.returncode == 0, res.stderr
    return value_of(res.stdout)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def split_at(owner, value, cuts):
    parts, last = [], 0
    for c in cuts + [len(value)]:
        parts.append(value[last:c])
        last = c
    return "%s TXT %s" % (owner, " ".join('"%s"' % p for p in parts))


def main(st):
    os.makedirs(st.path("keys"), exist_ok=True)
    os.makedirs(st.path("other"), exist_ok=True)
    old = keygen(st, "old")
    wrong = keygen(st, "wrong", "elsewhere.test", "other")
    base = [txt("old._domainkey", old)]
    knot = Knot(st, {DOMAIN: base, ESP: []})
    knot.start()
    with open(st.path("etc", "key.table"), "w") as f:
        f.write(KEYTABLE.replace("{dir}", st.dir))
    with open(st.path("etc", "signing.table"), "w") as f:
        f.write(SIGNING)
    conf = st.path("etc", "milter.conf")
    with open(conf, "w") as f:
        f.write((CONF % knot.servers).replace("{dir}", st.dir)
                .replace("{port}", str(st.port("milter"))))

    # 4. a planted link where the next key file would go
    victim = st.path("other", "victim")
    res = run([mxdkim.KEYGEN, "rotate", "-c", conf, "-d", DOMAIN, "-b", "1024"], timeout=120)
    m = re.search(r"^(rsa-(\d{8}))\._domainkey", res.stdout, re.M)
    tap.ok(res.returncode == 0 and m, "rotate -d %s: a pending key" % DOMAIN,
           diag=res.stdout + res.stderr)
    sel = m.group(1) if m else "?"
    value = value_of(res.stdout)
    # undo it by hand, plant links at its name, and rotate again under umask 0
    table = read(st.path("etc", "key.table")).decode()
    with open(st.path("etc", "key.table"), "w") as f:
        f.write("".join(line for line in table.splitlines(True) if sel not in line))
    for ext in ("private", "txt"):
        os.unlink(st.path("keys", "%s.%s" % (sel, ext)))
        os.symlink(victim + "." + ext, st.path("keys", "%s.%s" % (sel, ext)))
    old_umask = os.umask(0)
    try:
        res = run([mxdkim.KEYGEN, "rotate", "-c", conf, "-d", DOMAIN, "-b", "1024"],
                  timeout=120)
    finally:
        os.umask(old_umask)
    m = re.search(r"^(rsa-\d{8}-\d+)\._domainkey", res.stdout, re.M)
    tap.ok(not os.path.exists(victim + ".private") and not os.path.exists(victim + ".txt"),
           "rotate wrote nothing through the planted links", diag=res.stdout + res.stderr)
    tap.ok(res.returncode == 0 and m, "rotate took the next free selector",
           diag=res.stdout + res.stderr)
    sel = m.group(1) if m else "?"
    value = value_of(res.stdout) if m else value
    path = st.path("keys", sel + ".private")
    mode = stat.S_IMODE(os.lstat(path).st_mode) if os.path.exists(path) else None
    tap.ok(mode == 0o600 and not os.path.islink(path),
           "under umask 0 the new key file is a plain file of mode 0600 (%r)" % mode)
    name = "%s._domainkey.%s" % (sel, DOMAIN)
    owner = "%s._domainkey" % sel
    before = (read(st.path("etc", "key.table")), read(st.path("etc", "signing.table")))

    def tables():
        return (read(st.path("etc", "key.table")), read(st.path("etc", "signing.table")))

    def row(text):
        for line in text.splitlines():
            if re.match(r"^\S+key\.table:\d+: %s" % re.escape(name), line):
                return line
        return ""

    def attempt(what, records, esp, verdict):
        knot.set_zone(DOMAIN, base + records)
        knot.set_zone(ESP, esp)
        check = run([mxdkim.MILTER, "-c", conf, "-t", "--dns"], timeout=120)
        line = row(check.stdout)
        tap.ok(check.returncode == 1 and (": %s (rsa)" % verdict) in line,
               "%s: -t --dns says %s" % (what, verdict), diag=check.stdout + check.stderr)
        res = run([mxdkim.KEYGEN, "rotate", "--activate", "-c", conf, "-d", DOMAIN],
                  timeout=120)
        tap.ok(res.returncode == 1 and "not activated" in res.stderr and tables() == before,
               "%s: --activate refuses, tables unchanged" % what,
               diag=res.stdout + res.stderr)

    # 1. CNAME'd selectors
    cname = ["%s CNAME %s.%s." % (owner, "dkim1", ESP)]
    attempt("CNAME to another key", cname, [txt("dkim1", wrong)], "different key")
    attempt("CNAME to no such name", cname, [txt("dkim2", value)], "missing")
    attempt("CNAME into a zone nobody serves",
            ["%s CNAME dkim.nowhere.invalid." % owner], [], "temporary DNS error")
    attempt("CNAME loop", ["%s CNAME loop.%s." % (owner, ESP)],
            ["loop CNAME %s.%s." % (owner, DOMAIN)], "temporary DNS error")
    # 2. records a verifier may pick instead of ours
    attempt("wildcard with another key", [txt("*._domainkey", wrong)], [], "different key")
    attempt("a non-DKIM TXT beside ours",
            [txt(owner, value), txt(owner, "google-site-verification=abc")], [],
            "syntax error")
    # 3. strings split anywhere, unknown tags: matching
    p = value.index("p=")
    for what, rec in (("split inside k=", split_at(owner, value, [value.index("k=") + 1])),
                      ("split inside p=", split_at(owner, value, [p + 1, p + 40, p + 41])),
                      ("unknown tags and notes",
                       txt(owner, value.replace("k=rsa;", "k=rsa; n=rotated by hand; x=1;")))):
        knot.set_zone(DOMAIN, base + [rec])
        check = run([mxdkim.MILTER, "-c", conf, "-t", "--dns"], timeout=120)
        tap.ok(check.returncode == 0 and ": published and matching (rsa)" in row(check.stdout),
               "%s: published and matching" % what, diag=check.stdout + check.stderr)
    tap.is_(tables(), before, "the checks changed nothing")
    # 5. two resolvers that disagree
    knot.set_zone(DOMAIN, base + cname)
    knot.set_zone(ESP, [txt("dkim1", value)])
    lag = Knot(st, {DOMAIN: base, ESP: []}, name="lagging")
    lag.start()
    both = st.path("etc", "both.conf")
    with open(both, "w") as f:
        f.write(read(conf).decode().replace(knot.servers, knot.servers + ", " + lag.servers))
    verdicts, activated = set(), 0
    for _ in range(10):
        check = run([mxdkim.MILTER, "-c", both, "-t", "--dns"], timeout=120)
        verdicts.add((check.returncode, row(check.stdout)))
        res = run([mxdkim.KEYGEN, "rotate", "--activate", "-c", both, "-d", DOMAIN],
                  timeout=120)
        if res.returncode == 0 or tables() != before:
            activated += 1
            with open(st.path("etc", "key.table"), "wb") as f:
                f.write(before[0])
            with open(st.path("etc", "signing.table"), "wb") as f:
                f.write(before[1])
    tap.ok(activated == 0, "resolvers disagree: --activate refused 10 times out of 10 "
           "(activated %d times)" % activated)
    tap.ok(all(rc == 1 and ": missing (rsa)" in line and lag.servers in line
               for rc, line in verdicts),
           "resolvers disagree: -t --dns says missing, naming the server", diag=repr(verdicts))
    lag.stop()
    # 5. the right key behind a CNAME activates
    knot.set_zone(DOMAIN, base + cname)
    knot.set_zone(ESP, [txt("dkim1", value)])
    victim = subprocess.Popen(["sleep", "1000"])
    pidfile = st.path("run-pid")
    with open(pidfile, "w") as f:
        f.write("%d\n" % victim.pid)
    holder = open(pidfile)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        res = run([mxdkim.KEYGEN, "rotate", "--activate", "-c", conf, "-d", DOMAIN,
                   "-p", pidfile], timeout=120)
        time.sleep(0.5)
        alive = victim.poll() is None
    finally:
        holder.close()
        victim.kill()
        victim.wait()
    signing = read(st.path("etc", "signing.table")).decode()
    tap.ok(signing == "*@cname.test %s\n" % name,
           "CNAME to the right key: --activate switches the SigningTable",
           diag=res.stdout + res.stderr + signing)
    tap.ok(alive and res.returncode == 1 and "is not milter-dkim" in res.stderr,
           "a locked pid file naming another process: not signalled, reload by hand",
           diag="alive=%r rc=%r %s" % (alive, res.returncode, res.stdout + res.stderr))
    check = run([mxdkim.MILTER, "-c", conf, "-t"], timeout=120)
    tap.ok(check.returncode == 0, "milter-dkim -t loads the rotated tables",
           diag=check.stdout + check.stderr)


def test_keygen_arguments(st):
    """Selector and domain name files and the TXT record as they are:
    "-s ../escape" wrote the private key outside -D; "-b 2048x" was 2048."""
    os.makedirs(st.path("argkeys", "in"), exist_ok=True)
    cases = [(["-d", DOMAIN, "-s", "../escape"], "-s: not a selector"),
             (["-d", DOMAIN, "-s", ""], "-s: not a selector"),
             (["-d", DOMAIN, "-s", "g h"], "-s: not a selector"),
             (["-d", DOMAIN, "-s", "s1;x=y"], "-s: not a selector"),
             (["-d", "exa mple.com", "-s", "s1"], "-d: not a DNS name"),
             (["-d", "../x", "-s", "s1"], "-d: not a DNS name"),
             (["-d", DOMAIN, "-s", "s1", "-b", "2048x"], "-b 2048x: not a whole number"),
             (["rotate", "-d", DOMAIN, "-s", "../up", "-D", st.path("argkeys", "in")],
              "not a selector")]
    for args, words in cases:
        argv = [mxdkim.KEYGEN] + args + ([] if "rotate" in args else
                                          ["-D", st.path("argkeys", "in")])
        res = run(argv)
        tap.ok(res.returncode == 1 and words in res.stderr, "keygen %s: refused, saying %r"
               % (" ".join(repr(a) for a in args), words), diag=res.stdout + res.stderr)
    tap.is_(sorted(os.listdir(st.path("argkeys"))), ["in"], "no key written outside -D")
    tap.is_(os.listdir(st.path("argkeys", "in")), [], "nor inside it")
    res = run([mxdkim.KEYGEN, "-d", DOMAIN, "-s", "sel-2026.a_b", "-b", "1024", "-D",
               st.path("argkeys", "in")])
    tap.ok(res.returncode == 0 and sorted(os.listdir(st.path("argkeys", "in")))
           == ["sel-2026.a_b.private", "sel-2026.a_b.txt"],
           "a selector with '-', '_' and a dot: its two files", diag=res.stderr)


with Stack("milter-dkim-rotate-attack") as st:
    tap.stack = st
    test_keygen_arguments(st)
    main(st)

sys.exit(tap.done())
