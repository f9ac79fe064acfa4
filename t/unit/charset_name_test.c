/* charset_name_test - charset_name(3): Python's charset names map to names
 * glibc's iconv(3) opens for the same codec; names Python has no codec
 * for are none, also where glibc opens them (t/data/charset_aliases.py
 * writes only targets that open). */

#include "build_config.h"

#include <iconv.h>
#include <string.h>

#include "charset_name.h"
#include "tap.h"

static int opens(const char *name)
{
    iconv_t cd = iconv_open("UTF-8", name);

    if (cd == (iconv_t) - 1)
	return (0);
    iconv_close(cd);
    return (1);
}

static const char *name_of(const char *name)
{
    static char buf[CHARSET_NAME_SIZE];

    return (charset_name(name, strlen(name), buf));
}

/* the bytes of in (charset cs, via charset_name()) as UTF-8, or "(none)" */

static const char *utf8_of(const char *cs, const char *in, size_t len)
{
    static char out[256];
    char   *ip = (char *) in, *op = out;
    size_t  il = len, ol = sizeof(out) - 1;
    iconv_t cd = iconv_open("UTF-8", name_of(cs));

    if (cd == (iconv_t) - 1)
	return ("(none)");
    if (iconv(cd, &ip, &il, &op, &ol) == (size_t) -1)
	strcpy(op = out, "(bad)"), op += 5;
    iconv_close(cd);
    *op = 0;
    return (out);
}

int     main(void)
{
    static const char *const spelled[] = {
	/* as mail writes them; Python reads each */
	"ks_c_5601-1987", "KS_C_5601-1987", "ks-c-5601-1987", "korean", "ksc5601",
	"latin-1", "Latin_1", "l9", "unicode-1-1-utf-7", "utf_16_be", "cp65001",
	"x-mac-japanese", "mac_roman", "s_jis", "shiftjis", "iso2022_jp", "ms949", "936",
	"csbig5", "ansi_x3.4_1968", " latin-1 ", 0};
    static const char *const known[] = {"utf-8", "UTF-8", "iso-8859-1", "Shift_JIS",
	"euc-kr", "ISO-2022-JP", "windows-1252", "cp949", 0};
    static const char *const glibc_only[] = {"IBM1047", "ibm285", "IBM930", "IBM1141",
	"ibm-1047", 0};

    for (int i = 0; spelled[i]; i++) {
	ok(!opens(spelled[i]) || strcmp(spelled[i], " latin-1 ") == 0,
	   "(glibc does not open %s by itself)", spelled[i]);
	ok(opens(name_of(spelled[i])), "%s: opens as %s", spelled[i], name_of(spelled[i]));
    }
    for (int i = 0; known[i]; i++)
	ok(opens(name_of(known[i])), "%s: opens as %s", known[i], name_of(known[i]));
    for (int i = 0; glibc_only[i]; i++) {
	ok(opens(glibc_only[i]), "(glibc opens %s)", glibc_only[i]);
	ok(name_of(glibc_only[i]) == NULL
	   && !charset_python_reads(glibc_only[i], strlen(glibc_only[i])),
	   "%s: no charset, as for Python (its bytes are ASCII)", glibc_only[i]);
    }
    ok(name_of("hz") == NULL && charset_python_reads("hz", 2),
       "hz: Python reads it, glibc lacks it: NULL, but a charset");
    ok(name_of("x-mxkit-unknown") == NULL, "an unknown name: NULL");
    ok(name_of("") == NULL, "empty: NULL");
    ok(name_of("ansi.x3.4.1968") != NULL && name_of("utf.8") == NULL,
       "'.' read as '_' for aliases only, as Python does");
    is_str(utf8_of("ks_c_5601-1987", "\xb1\xe8\xc3\xb6\xbc\xf6", 6),
	   "\xea\xb9\x80\xec\xb2\xa0\xec\x88\x98", "Outlook's Korean: 3 syllables, as Python reads");
    is_str(utf8_of("latin-1", "M\xfcller", 6), "M\xc3\xbcller", "latin-1");
    is_str(utf8_of("unicode-1-1-utf-7", "+AGMAZQBv-", 10), "ceo", "unicode-1-1-utf-7");
    {
	char    big[300];

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	ok(name_of(big) == NULL, "a long name: no charset, not overrun");
    }
    return (tap_done());
}
