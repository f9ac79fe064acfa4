#!/usr/bin/python3
"""contrib/demo's body runs end to end against the build under test and
every part's step works (the demo is documentation that must not rot)."""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxtest import BUILD, src_path, tap  # noqa: E402

res = subprocess.run(["/usr/bin/python3", src_path("contrib", "demo.py")],
                     capture_output=True, text=True, timeout=300,
                     env=dict(os.environ, MXKIT_BUILD=BUILD))
tap.is_(res.returncode, 0, "contrib/demo.py exits 0", diag=res.stdout[-3000:] + res.stderr)
m = re.search(r"(\d+) of (\d+) demo steps worked", res.stdout)
tap.ok(m and m.group(1) == m.group(2), "every demo step worked: %s" % (m and m.group(0)))
tap.ok("Rate limit per_user exceeded for svc-alerts" in res.stdout,
       "the demo shows a service hitting its limit")
tap.ok(re.search(r"dkimpy verified them .*: pass, pass", res.stdout),
       "the demo shows RSA and Ed25519 signatures verified by dkimpy")
tap.ok(re.search(r"Postfix logged the real client.*client=\S*\[127\.0\.0\.2\]", res.stdout),
       "the demo shows Postfix logging the real client behind haproxy and the shim")
tap.ok(re.search(r"signature checked with Python's hmac: valid; attachment invoice-42.pdf "
                r"bytes and sha256 match: yes", res.stdout),
       "the demo shows a bill mail turning into a verified webhook")
tap.ok(re.search(r"flush: flush requested from lmtp-webhook-spool run.*\n"
                r".*arrived 1 time\(s\), signature valid", res.stdout),
       "the demo shows a receiver outage being caught up")
tap.ok(not os.path.exists("/tmp/mxkit-demo/stack.json"), "the demo cleaned up after itself")
sys.exit(tap.done())
