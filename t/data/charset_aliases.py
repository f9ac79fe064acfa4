#!/usr/bin/python3
"""charset_aliases.py - the rows of milter-dkim/charset_name.c's table:
every charset name Python's codecs read (encodings.aliases, their codec
names, the encodings package's modules; a text encoding), normalized as
Python normalizes it, with the name glibc's iconv_open() opens for that
codec, or NULL where glibc has no such codec, and 1 for an alias (Python
finds those by a name with '.' for '_' too). A name not in the table is
no charset for Python: its email reads such text as ASCII, and so do the
callers (glibc's IBM1047, IBM285... would read it as EBCDIC: helper-124).
Prints C initializers, sorted as strcmp() sorts (the table is searched
with bsearch()).

usage: /usr/bin/python3 t/data/charset_aliases.py > rows.c
"""
import codecs
import ctypes
import ctypes.util
import email.charset
import encodings
import encodings.aliases
import pkgutil

libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.iconv_open.restype = ctypes.c_void_p
libc.iconv_open.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.iconv_close.argtypes = [ctypes.c_void_p]

# Python's codec names glibc spells otherwise (None: glibc lacks it)
GLIBC = {"mac-roman": "MACINTOSH", "mac-latin2": "MAC-CENTRALEUROPE", "mac-iceland": "MAC-IS",
         "mac-greek": None, "mac-turkish": None, "mac-cyrillic": "MAC-CYRILLIC",
         "iso2022_jp": "ISO-2022-JP", "iso2022_kr": "ISO-2022-KR", "iso2022_jp_1": None,
         "iso2022_jp_2": "ISO-2022-JP-2", "iso2022_jp_3": "ISO-2022-JP-3",
         "iso2022_jp_2004": None, "iso2022_jp_ext": None,
         "euc_jis_2004": "EUC-JISX0213", "euc_jisx0213": "EUC-JISX0213",
         "shift_jis_2004": "SHIFT_JISX0213", "shift_jisx0213": "SHIFT_JISX0213",
         "hp-roman8": "HP-ROMAN8", "ptcp154": "PT154", "kz1048": "RK1048",
         "big5hkscs": "BIG5-HKSCS", "utf-16-be": "UTF-16BE", "utf-16-le": "UTF-16LE",
         "utf-32-be": "UTF-32BE", "utf-32-le": "UTF-32LE", "cp1125": None}


def opens(name):
    h = libc.iconv_open(b"UTF-8", name.encode())
    if h in (None, 2 ** 64 - 1):
        return False
    libc.iconv_close(h)
    return True


def glibc_name(codec):
    if codec in GLIBC:
        return GLIBC[codec] if GLIBC[codec] and opens(GLIBC[codec]) else None
    for c in (codec, codec.replace("_", "-"), codec.replace("-", ""), codec.replace("_", ""),
              codec.upper()):
        if opens(c):
            return c
    return None


def main():
    aliases = set(encodings.aliases.aliases)
    names = aliases | set(encodings.aliases.aliases.values())
    names |= {m.name for m in pkgutil.iter_modules(encodings.__path__)}
    names |= {encodings.normalize_encoding(k).lower() for k in email.charset.ALIASES}
    rows = {}
    for name in names:
        try:
            codec = codecs.lookup(name)
        except LookupError:
            continue
        if not codec._is_text_encoding:
            continue
        key = encodings.normalize_encoding(name).lower()
        # an alias is found by a name with '.' for '_' too; a module not
        rows[key] = (glibc_name(codec.name), int(key in rows and rows[key][1]
                                                 or name in aliases))
    for key in sorted(rows, key=lambda s: s.encode()):
        target, alias = rows[key]
        print('    {"%s", %s, %d},' % (key, '"%s"' % target if target else "NULL", alias))


if __name__ == "__main__":
    main()
