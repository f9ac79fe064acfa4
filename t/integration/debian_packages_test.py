#!/usr/bin/python3
# mxkit-test: alone (dpkg installs into, and purges from, the machine's own /usr)
"""contrib/debian: `dpkg-buildpackage -us -uc -b` builds one package per
part, lintian reports no error and no warning, the packages install, and
the integration tests of every part pass against the installed files
(a build tree whose daemons, plugin and preload library are symlinks to
what dpkg installed). The packages are purged afterwards."""

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxtest import BUILD, TOP, run, tap  # noqa: E402

PACKAGES = ["mxkit-milter-dkim", "mxkit-policyd-ratelimit", "mxkit-proxyv2-shim",
            "dovecot-lmtp-webhook"]
INSTALLED = {   # build-tree path -> installed path
    "milter-dkim/milter-dkim": "/usr/sbin/milter-dkim",
    "milter-dkim/milter-dkim-keygen": "/usr/sbin/milter-dkim-keygen",
    "policyd-ratelimit/policyd-ratelimit": "/usr/sbin/policyd-ratelimit",
    "proxyv2-shim/proxyv2-shim": "/usr/sbin/proxyv2-shim",
    "proxyv2-shim/.libs/libproxyv2-preload.so":
        "/usr/lib/x86_64-linux-gnu/mxkit/libproxyv2-preload.so",
    "lmtp-webhook/lmtp-webhook-spool": "/usr/sbin/lmtp-webhook-spool",
    "lmtp-webhook/.libs/lib95_lmtp_webhook_plugin.so":
        "/usr/lib/dovecot/modules/lib95_lmtp_webhook_plugin.so",
}
TESTS = ["milter_dkim_unix_test.py", "policyd_limits_test.py", "proxyv2_shim_test.py",
         "proxyv2_preload_test.py", "lmtp_webhook_test.py", "metrics_test.py"]


def source_copy(work):
    dest = os.path.join(work, "mxkit-0.1.0")
    files = subprocess.run(["git", "-C", TOP, "ls-files", "-co", "--exclude-standard"],
                           capture_output=True, text=True)
    if files.returncode == 0 and files.stdout:
        for name in files.stdout.splitlines():
            if name.startswith("build") or not os.path.isfile(os.path.join(TOP, name)):
                continue
            os.makedirs(os.path.dirname(os.path.join(dest, name)), exist_ok=True)
            shutil.copy2(os.path.join(TOP, name), os.path.join(dest, name))
    else:
        shutil.copytree(TOP, dest, ignore=shutil.ignore_patterns("build*", ".git"))
    shutil.copytree(os.path.join(dest, "contrib", "debian"), os.path.join(dest, "debian"))
    return dest


def installed_build(work):
    """The build tree as symlinks, with the packaged files swapped in."""
    fake = os.path.join(work, "installed-build")
    subprocess.run(["cp", "-as", os.path.abspath(BUILD), fake], check=True)
    # its own logs, not symlinks into the real build's
    shutil.rmtree(os.path.join(fake, "t", "integration-logs"), ignore_errors=True)
    for rel, target in INSTALLED.items():
        path = os.path.join(fake, rel)
        if os.path.lexists(path):
            os.unlink(path)
        os.symlink(target, path)
    return fake


def failed_checks(output, name):
    """Each "not ok" line of NAME's section of run-integration's output with
    the diagnostics under it, and the section's end (a failure in a run that
    printed only its summary cannot be looked into afterwards)."""
    m = re.search(r"^=== %s\n(.*?)^=== %s:" % (re.escape(name), re.escape(name)), output,
                  re.M | re.S)
    section = m.group(1) if m else output
    lines, keep, out = section.splitlines(), 0, []
    for line in lines:
        if line.startswith("not ok"):
            keep = 30
        elif not line.startswith("#"):
            keep = 0
        if keep:
            out.append(line)
            keep -= 1
    return "\n".join(out)[-6000:] + "\n--- end of the file's output:\n" + section[-1500:]


def main():
    work = tempfile.mkdtemp(prefix="mxkit-deb.")
    try:
        src = source_copy(work)
        res = subprocess.run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src,
                             capture_output=True, text=True, timeout=1800,
                             env=dict(os.environ, DEB_BUILD_OPTIONS="nocheck parallel=%d"
                                      % os.cpu_count()))
        tap.is_(res.returncode, 0, "dpkg-buildpackage -us -uc -b", diag=res.stdout[-3000:]
                + res.stderr[-2000:])
        debs = {re.sub(r"_.*", "", os.path.basename(d)): d
                for d in glob.glob(os.path.join(work, "*.deb")) if "-dbgsym_" not in d}
        tap.is_(sorted(debs), sorted(PACKAGES), "one package per part")
        if sorted(debs) != sorted(PACKAGES):
            return
        lint = run(["lintian", "--tag-display-limit", "0", "--fail-on", "error,warning"]
                   + list(glob.glob(os.path.join(work, "*.changes"))), timeout=900)
        tags = [line for line in lint.stdout.splitlines() if re.match(r"^[EW]: ", line)]
        tap.ok(lint.returncode == 0 and not tags, "lintian: no error, no warning",
               diag="\n".join(tags) + lint.stderr[-1000:])
        inst = run(["dpkg", "-i"] + [debs[p] for p in PACKAGES], timeout=600)
        tap.is_(inst.returncode, 0, "dpkg -i installs the four packages",
                diag=inst.stdout[-2000:] + inst.stderr[-2000:])
        for rel, target in INSTALLED.items():
            tap.ok(os.path.exists(target), "installed: %s" % target)
        tap.ok(os.path.exists("/lib/systemd/system/milter-dkim.service"),
               "units installed under /lib/systemd/system")
        res = run(["man", "-w", "lmtp-webhook-spool"])
        tap.ok(res.returncode == 0 and "/usr/share/man/man8" in res.stdout,
               "man pages installed (man -w lmtp-webhook-spool)")
        fake = installed_build(work)
        tap.ok(all(os.path.realpath(os.path.join(fake, rel)) == os.path.realpath(target)
                   for rel, target in INSTALLED.items()),
               "the tests below run the installed daemons, plugin and library")
        res = subprocess.run([os.path.join(TOP, "t", "run-integration"), fake]
                             + [os.path.join(TOP, "t", "integration", t) for t in TESTS],
                             capture_output=True, text=True, timeout=3000)
        for t in TESTS:
            m = re.search(r"^=== %s: (\d+) passed, (\d+) failed" % re.escape(t), res.stdout,
                          re.M)
            tap.ok(m and int(m.group(1)) > 0 and m.group(2) == "0",
                   "installed files: %s" % (m.group(0)[4:] if m else t + ": no result"),
                   diag=failed_checks(res.stdout, t) if not m or m.group(2) != "0" else None)
    finally:
        run(["dpkg", "--purge"] + PACKAGES, timeout=600)
        shutil.rmtree(work, ignore_errors=True)


main()
sys.exit(tap.done())
