#!/usr/bin/python3
# mxkit-test: alone (compiles the tree twice: its load would stretch others' timeouts)
"""configure on machines that lack a dependency, simulated in a private
mount namespace that hides the dependency's files:

- with dovecot-dev installed, `./configure --disable-lmtp-webhook` works
  (DC_DOVECOT's automake conditionals are defined false when the part is
  off) and a plain `./configure` enables lmtp-webhook;
- without dovecot-dev, `./configure --disable-lmtp-webhook` works, and a
  plain `./configure` fails naming dovecot-dev;
- without libopendkim-dev, configure fails naming libopendkim-dev."""

import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from mxtest import TOP, tap  # noqa: E402

PCDIR = "/usr/lib/x86_64-linux-gnu/pkgconfig"

HIDE_DOVECOT = """
mount --bind /dev/null /usr/share/aclocal/dovecot.m4
mount --bind /dev/null /usr/lib/dovecot/dovecot-config
"""

HIDE_OPENDKIM = """
mkdir -p "$WORK/empty" "$WORK/pc"
cp -a %(pc)s/. "$WORK/pc/" && rm -f "$WORK/pc/opendkim.pc"
mount --bind "$WORK/pc" %(pc)s
mount --bind "$WORK/empty" /usr/include/opendkim
""" % {"pc": PCDIR}


def in_namespace(hide, commands, work):
    script = "set -e\n" + hide + "cd \"$WORK/src\"\n" + commands
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, env=dict(os.environ, WORK=work),
                          timeout=600)


def copy_source(work):
    ignore = shutil.ignore_patterns(".git", "build*", "autom4te.cache", "*.o", "*.lo",
                                    ".libs", ".deps", "config.status", "config.log")
    shutil.copytree(TOP, os.path.join(work, "src"), ignore=ignore, symlinks=True)


work = tempfile.mkdtemp(prefix="mxkit-configure.")
try:
    copy_source(work)
    # dovecot-dev installed: its conditionals exist only inside DC_DOVECOT
    res = in_namespace("", "test -s /usr/share/aclocal/dovecot.m4\n"
                       "autoreconf -fi >/dev/null 2>&1\n"
                       "./configure --disable-lmtp-webhook\n", work)
    tap.is_(res.returncode, 0, "with dovecot-dev: ./configure --disable-lmtp-webhook works",
            diag=res.stdout[-800:] + res.stderr[-1500:])
    tap.ok("lmtp-webhook       no" in res.stdout, "lmtp-webhook reported as disabled",
           diag=res.stdout[-800:])
    res = in_namespace("", "./configure\n", work)
    tap.is_(res.returncode, 0, "with dovecot-dev: plain ./configure works",
            diag=res.stdout[-800:] + res.stderr[-1500:])
    tap.ok("lmtp-webhook       yes" in res.stdout, "lmtp-webhook reported as enabled",
           diag=res.stdout[-800:])

    res = in_namespace(HIDE_DOVECOT, "test ! -s /usr/share/aclocal/dovecot.m4\n"
                       "autoreconf -fi >/dev/null 2>&1\n"
                       "./configure --disable-lmtp-webhook\n", work)
    tap.is_(res.returncode, 0, "without dovecot-dev: ./configure --disable-lmtp-webhook works")
    if res.returncode:
        tap.diag(res.stdout[-1500:] + res.stderr[-1500:])
    tap.ok("lmtp-webhook       no" in res.stdout, "lmtp-webhook reported as disabled",
           diag=res.stdout[-800:])

    res = in_namespace(HIDE_DOVECOT, "./configure\n", work)
    tap.ok(res.returncode != 0, "without dovecot-dev: plain ./configure fails")
    tap.ok("install the Debian package dovecot-dev" in res.stderr,
           "the error names dovecot-dev", diag=res.stderr[-800:])

    res = in_namespace(HIDE_OPENDKIM, "autoreconf -fi >/dev/null 2>&1\n./configure\n", work)
    tap.ok(res.returncode != 0, "without libopendkim-dev: ./configure fails")
    tap.ok("install the Debian package libopendkim-dev" in res.stderr,
           "the error names libopendkim-dev", diag=res.stderr[-800:])

    res = in_namespace(HIDE_OPENDKIM, "./configure --disable-milter-dkim\n", work)
    tap.is_(res.returncode, 0, "without libopendkim-dev: --disable-milter-dkim works")
finally:
    shutil.rmtree(work, ignore_errors=True)

sys.exit(tap.done())
