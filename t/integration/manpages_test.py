#!/usr/bin/python3
"""Every man page in the source tree formats without a groff warning
(groff -man -ww -z prints nothing), and each is installed by
`make install` (listed in man_MANS)."""

import glob
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxtest import src_path, tap  # noqa: E402

PARTS = ("common", "milter-dkim", "policyd-ratelimit", "lmtp-webhook", "proxyv2-shim")
pages = sorted(p for d in PARTS for p in glob.glob(src_path(d, "*.[1-8]")))
makefiles = ""
for mk in glob.glob(src_path("*", "Makemodule.am")):
    with open(mk) as f:
        makefiles += f.read()
tap.ok(len(pages) >= 5, "found %d man pages" % len(pages))
for page in pages:
    res = subprocess.run(["groff", "-man", "-ww", "-z", page], capture_output=True, text=True,
                         env=dict(os.environ, LC_ALL="C.UTF-8"))
    name = os.path.relpath(page, src_path())
    tap.ok(res.returncode == 0 and not res.stderr.strip(), "%s: groff -ww is silent" % name,
           diag=res.stderr[-800:])
    tap.ok("man_MANS" in makefiles and name in makefiles, "%s: installed (man_MANS)" % name)
sys.exit(tap.done())
