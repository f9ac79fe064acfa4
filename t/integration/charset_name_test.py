#!/usr/bin/python3
"""milter-dkim/charset_name.c's table of charset names (read by milter-dkim's
lenient From: reader and by lmtp-webhook's MIME reader) is exactly what
t/data/charset_aliases.py writes on this machine: every alias Python's
codecs read that glibc's iconv_open() refuses, mapped to a name glibc
opens. A Python or glibc that reads a name otherwise fails here, not in
a bill."""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxtest import src_path, tap  # noqa: E402

res = subprocess.run(["/usr/bin/python3", src_path("t", "data", "charset_aliases.py")],
                     capture_output=True, text=True, timeout=60)
tap.is_(res.returncode, 0, "t/data/charset_aliases.py runs", diag=res.stderr[-800:])
want = re.findall(r'\{"([^"]+)", "([^"]+)"\}', res.stdout)
with open(src_path("milter-dkim", "charset_name.c")) as f:
    got = re.findall(r'^    \{"([^"]+)", "([^"]+)"\},$', f.read(), re.M)
tap.ok(len(want) >= 100, "the generator finds %d aliases" % len(want))
tap.is_(got, want, "charset_name.c's table equals the generator's output, row for row, "
        "in bsearch order")
for name, target in [("ks_c_5601_1987", "euc-kr"), ("latin_1", "iso8859-1"),
                     ("unicode_1_1_utf_7", "utf-7"), ("utf_16_be", "UTF-16BE")]:
    tap.ok((name, target) in got, "%s is read as %s" % (name, target))
sys.exit(tap.done())
