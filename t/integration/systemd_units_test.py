#!/usr/bin/python3
"""contrib/systemd: every unit passes `systemd-analyze verify` (with its
ExecStart pointed at the binaries of the build under test, since nothing
is installed in /usr/sbin here), is hardened, is Type=notify with the
daemon in the foreground (it says READY=1 once it serves: sd_notify_test),
and only the transparent
drop-in grants CAP_NET_ADMIN."""

import glob
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxtest import build_path, run, src_path, tap  # noqa: E402

PROGRAMS = {
    "milter-dkim": build_path("milter-dkim", "milter-dkim"),
    "policyd-ratelimit": build_path("policyd-ratelimit", "policyd-ratelimit"),
    "proxyv2-shim": build_path("proxyv2-shim", "proxyv2-shim"),
    "lmtp-webhook-spool": build_path("lmtp-webhook", "lmtp-webhook-spool"),
}
HARDENING = ["NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes",
             "ProtectHome=yes", "RestrictAddressFamilies=", "SystemCallFilter=@system-service"]


def localize(text):
    for name, path in PROGRAMS.items():
        text = text.replace("/usr/sbin/%s " % name, path + " ")
    return text


def verify(name, text, tmp):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text)
    res = run(["systemd-analyze", "verify", "--man=no", path])
    return res.returncode == 0 and not res.stderr.strip() and not res.stdout.strip(), \
        res.stdout + res.stderr


units = sorted(glob.glob(src_path("contrib", "systemd", "*.service")))
tap.is_(sorted(os.path.basename(u)[:-8] for u in units), sorted(PROGRAMS),
        "a unit per daemon")
with tempfile.TemporaryDirectory() as tmp:
    for unit in units:
        name = os.path.basename(unit)
        with open(unit) as f:
            text = f.read()
        good, out = verify(name, localize(text), tmp)
        tap.ok(good, "%s: systemd-analyze verify is clean" % name, diag=out)
        missing = [h for h in HARDENING if h not in text]
        tap.is_(missing, [], "%s: hardened" % name)
        tap.ok(re.search(r"^Type=notify$", text, re.M) and re.search(r"^ExecStart=.* -f\b", text, re.M),
               "%s: Type=notify, the daemon in the foreground (READY=1 once it serves)" % name)
        # helper-120: User=mxkit Group=postfix ran without group mxkit
        # (systemd: Group= and the groups listing the user as a member),
        # and the guides' key directory is root:mxkit 0750
        user = re.search(r"^User=(\S+)$", text, re.M)
        group = re.search(r"^Group=(\S+)$", text, re.M)
        extra = re.findall(r"^SupplementaryGroups=(.*)$", text, re.M)
        tap.ok(not user or not group or group.group(1) == user.group(1)
               or user.group(1) in " ".join(extra).split(),
               "%s: runs in its user's own group too (%s, Group=%s, SupplementaryGroups=%s)"
               % (name, user and user.group(1), group and group.group(1), extra))
        caps = re.search(r"^CapabilityBoundingSet=(.*)$", text, re.M)
        tap.ok(caps and "CAP_NET_ADMIN" not in caps.group(1) and "CAP_SYS_ADMIN" not in caps.group(1),
               "%s: CapabilityBoundingSet=%s" % (name, caps.group(1) if caps else "(missing)"))
    with open(src_path("contrib", "systemd", "proxyv2-shim.service")) as f:
        shim = f.read()
    with open(src_path("contrib", "systemd", "proxyv2-shim.service.d", "transparent.conf")) as f:
        dropin = f.read()
    good, out = verify("proxyv2-shim-transparent.service",
                       localize(shim) + "\n" + dropin, tmp)   # [Service] reopened
    tap.ok(good, "proxyv2-shim with the transparent drop-in: verify is clean", diag=out)
    tap.ok("CAP_NET_ADMIN" in dropin, "the transparent drop-in adds CAP_NET_ADMIN")
sys.exit(tap.done())
