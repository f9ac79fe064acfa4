#!/usr/bin/python3
"""milter-dkim/charset_name.c's table of charset names (read by milter-dkim's
lenient From: reader and by lmtp-webhook's MIME reader) is exactly what
t/data/charset_aliases.py writes on this machine: every name Python's
codecs read, with the name glibc's iconv_open() opens for that codec.
And, through t/charsetq, charset_name(3) agrees with Python's
codecs.lookup() on which names are charsets at all, for the names mail
writes and for any spelling of them (property test): a name Python has
no codec for (IBM1047: glibc reads it as EBCDIC) is none here either
(helper-124: "=?IBM1047?q?ceo=40other.example?=" was mojibake to the
milter and ceo@other.example to readers). A Python or glibc that reads
a name otherwise fails here, not in a bill."""

import codecs
import encodings.aliases
import os
import re
import subprocess
import sys

from hypothesis import given, settings, strategies as st

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mxtest import build_path, src_path, tap  # noqa: E402

res = subprocess.run(["/usr/bin/python3", src_path("t", "data", "charset_aliases.py")],
                     capture_output=True, text=True, timeout=60)
tap.is_(res.returncode, 0, "t/data/charset_aliases.py runs", diag=res.stderr[-800:])
ROW = r'\{"([^"]+)", (?:"([^"]+)"|NULL), ([01])\}'
want = re.findall(ROW, res.stdout)
with open(src_path("milter-dkim", "charset_name.c")) as f:
    got = re.findall(r"^    %s,$" % ROW, f.read(), re.M)
tap.ok(len(want) >= 400, "the generator finds %d names" % len(want))
tap.is_(got, want, "charset_name.c's table equals the generator's output, row for row, "
        "in bsearch order")
for name, target in [("ks_c_5601_1987", "euc-kr"), ("latin_1", "iso8859-1"),
                     ("unicode_1_1_utf_7", "utf-7"), ("utf_16_be", "UTF-16BE")]:
    tap.ok((name, target) in [row[:2] for row in got], "%s is read as %s" % (name, target))

QUERY = build_path("t", "charsetq")


def c_reads(names):
    out = subprocess.run([QUERY], input="".join(n + "\n" for n in names), capture_output=True,
                         text=True, timeout=60).stdout.splitlines()
    return [int(line.split()[0]) for line in out]


def py_reads(name):
    try:
        return int(codecs.lookup(name)._is_text_encoding)
    except (LookupError, ValueError):
        return 0


MAIL = ["utf-8", "UTF8", "ks_c_5601-1987", "iso-8859-1", "latin-1", "windows-1252",
        "ISO-2022-JP", "Shift_JIS", "gb2312", "big5", "euc-kr", "koi8-r", "utf-16be",
        "unicode-1-1-utf-7", "x-mac-japanese", "us-ascii", "hz-gb-2312",
        # glibc reads these, Python does not: no charset
        "IBM1047", "cp1047", "ibm285", "IBM930", "IBM1141", "ibm-1047", "IBM16804",
        "x-unknown", "unknown-8bit", "utf-8*en", "base64", "rot13", "hex", "ebcdic",
        "ansi.x3.4.1968", "utf.8", "iso2022.jp_1", " utf-8 ", "UTF--8", ""]
got = c_reads(MAIL)
tap.is_(dict(zip(MAIL, got)), {n: py_reads(n) for n in MAIL},
        "%d names mail writes (and glibc-only EBCDIC ones): a charset here exactly when "
        "Python has a text codec for it" % len(MAIL))
names = sorted(set(encodings.aliases.aliases) | set(encodings.aliases.aliases.values()))
texts = [n for n in names if py_reads(n)]
tap.is_([n for n, c in zip(texts, c_reads(texts)) if c != 1], [],
        "every one of Python's %d aliases and codec names of a text encoding is a charset "
        "here" % len(texts))
tap.is_([n for n, c in zip(names, c_reads(names)) if c and not py_reads(n)], [],
        "and none of the other %d (base64, rot13, zlib, mbcs...)" % (len(names) - len(texts)))

checked = []


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(st.sampled_from(names + MAIL), min_size=1, max_size=3),
       st.lists(st.sampled_from(list(" -_.:/*\t") + ["\u00e9", "\u0130", "x", "1"]),
                max_size=4), st.randoms(use_true_random=False))
def spellings(parts, extra, rnd):
    name = list("".join(parts))
    for c in extra:
        name.insert(rnd.randint(0, len(name)), c)
    for i in range(len(name)):
        if rnd.random() < 0.2:
            name[i] = name[i].upper()
    checked.append("".join(name).replace("\n", ""))


spellings()
bad = [(n, c) for n, c in zip(checked, c_reads(checked)) if c != py_reads(n)]
tap.is_(bad, [], "property: %d spellings (joined names, separators, case, non-ASCII letters "
        "inserted): charset_name(3) reads a charset exactly when Python does" % len(checked))
sys.exit(tap.done())
