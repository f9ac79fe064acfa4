/*
 * NAME
 *	charset_name 3
 * SUMMARY
 *	the name iconv(3) opens for a charset name, as Python reads it
 * SYNOPSIS
 *	#include "charset_name.h"
 *
 *	const char *charset_name(name, len, buf)
 * DESCRIPTION
 *	Mail names charsets as its writers spell them, and readers decode
 *	what glibc's iconv(3) has no name for: Outlook's Korean
 *	"ks_c_5601-1987", "latin-1", "unicode-1-1-utf-7", "utf_16_be",
 *	"x-mac-japanese". Python reads a name lower-cased, every run of
 *	characters other than letters, digits and '.' made one '_'
 *	(encodings.normalize_encoding()), and then through its aliases.
 *
 *	charset_name() returns, in buf (CHARSET_NAME_SIZE bytes), the name
 *	iconv(3) knows for the len bytes at name when Python reads them as a
 *	charset iconv(3) has under another name, else the name itself
 *	(NUL-terminated in buf, cut at CHARSET_NAME_SIZE - 1). Callers try
 *	the name as written with iconv first where that matters; the table
 *	only adds names, it never changes one iconv(3) opens.
 *
 *	The table holds every alias of Python 3.11's encodings.aliases and
 *	email.charset.ALIASES that glibc 2.36's iconv_open() refuses
 *	(written both with '_' and with '-') and whose codec glibc has:
 *	t/data/charset_aliases.py writes it, and t/unit/charset_name_test.c
 *	checks that each target opens. Python's codecs glibc lacks (hz,
 *	cp1125, iso2022_jp_1, mac-greek, ...) stay unknown.
 */

#include "build_config.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "charset_name.h"

struct charset_alias {
    const char *python;			/* normalized as Python does */
    const char *iconv;
};

/* sorted by python (bsearch) */
static const struct charset_alias charset_aliases[] = {
    /* t/data/charset_aliases.py (Python 3.11, glibc 2.36) */
    {"037", "cp037"},
    {"1140", "cp1140"},
    {"1250", "cp1250"},
    {"1251", "cp1251"},
    {"1252", "cp1252"},
    {"1253", "cp1253"},
    {"1254", "cp1254"},
    {"1255", "cp1255"},
    {"1256", "cp1256"},
    {"1257", "cp1257"},
    {"1258", "cp1258"},
    {"273", "cp273"},
    {"424", "cp424"},
    {"646", "ascii"},
    {"775", "cp775"},
    {"8859", "iso8859-1"},
    {"932", "cp932"},
    {"936", "gbk"},
    {"949", "cp949"},
    {"950", "cp950"},
    {"ansi_x3.4_1968", "ascii"},
    {"ansi_x3.4_1986", "ascii"},
    {"ansi_x3_4_1968", "ascii"},
    {"big5_tw", "big5"},
    {"chinese", "gb2312"},
    {"cp1051", "HP-ROMAN8"},
    {"cp154", "PT154"},
    {"cp65001", "utf-8"},
    {"cp_is", "cp861"},
    {"csbig5", "big5"},
    {"csibm858", "cp858"},
    {"csibm861", "cp861"},
    {"csiso58gb231280", "gb2312"},
    {"csptcp154", "PT154"},
    {"cyrillic_asian", "PT154"},
    {"euc_jis2004", "EUC-JISX0213"},
    {"euc_jis_2004", "EUC-JISX0213"},
    {"eucgb2312_cn", "gb2312"},
    {"eucjis2004", "EUC-JISX0213"},
    {"eucjisx0213", "EUC-JISX0213"},
    {"gb18030_2000", "gb18030"},
    {"gb2312_1980", "gb2312"},
    {"gb2312_80", "gb2312"},
    {"hkscs", "BIG5-HKSCS"},
    {"ibm039", "cp037"},
    {"ibm1051", "HP-ROMAN8"},
    {"iso2022_jp", "ISO-2022-JP"},
    {"iso2022_jp_2", "ISO-2022-JP-2"},
    {"iso2022_jp_3", "ISO-2022-JP-3"},
    {"iso2022_kr", "ISO-2022-KR"},
    {"iso2022jp_2", "ISO-2022-JP-2"},
    {"iso2022jp_3", "ISO-2022-JP-3"},
    {"iso8859", "iso8859-1"},
    {"iso_646.irv_1991", "ascii"},
    {"iso_8859_10_1992", "iso8859-10"},
    {"iso_8859_11_2001", "iso8859-11"},
    {"iso_8859_14_1998", "iso8859-14"},
    {"iso_8859_16_2001", "iso8859-16"},
    {"iso_8859_1_1987", "iso8859-1"},
    {"iso_8859_2_1987", "iso8859-2"},
    {"iso_8859_3_1988", "iso8859-3"},
    {"iso_8859_4_1988", "iso8859-4"},
    {"iso_8859_5_1988", "iso8859-5"},
    {"iso_8859_6_1987", "iso8859-6"},
    {"iso_8859_7_1987", "iso8859-7"},
    {"iso_8859_8_1988", "iso8859-8"},
    {"iso_8859_9_1989", "iso8859-9"},
    {"iso_ir_58", "gb2312"},
    {"jisx0213", "EUC-JISX0213"},
    {"korean", "euc-kr"},
    {"ks_c_5601", "euc-kr"},
    {"ks_c_5601_1987", "euc-kr"},
    {"ks_x_1001", "euc-kr"},
    {"ksc5601", "euc-kr"},
    {"ksx1001", "euc-kr"},
    {"kz1048", "RK1048"},
    {"kz_1048", "RK1048"},
    {"l9", "iso8859-15"},
    {"latin", "iso8859-1"},
    {"latin_1", "iso8859-1"},
    {"mac_centeuro", "MAC-CENTRALEUROPE"},
    {"mac_iceland", "MAC-IS"},
    {"mac_latin2", "MAC-CENTRALEUROPE"},
    {"mac_roman", "MACINTOSH"},
    {"maccentraleurope", "MAC-CENTRALEUROPE"},
    {"maciceland", "MAC-IS"},
    {"maclatin2", "MAC-CENTRALEUROPE"},
    {"macroman", "MACINTOSH"},
    {"ms1361", "johab"},
    {"ms949", "cp949"},
    {"ms950", "cp950"},
    {"mskanji", "cp932"},
    {"ptcp154", "PT154"},
    {"s_jis", "shift_jis"},
    {"s_jis_2004", "SHIFT_JISX0213"},
    {"s_jisx0213", "SHIFT_JISX0213"},
    {"shift_jis_2004", "SHIFT_JISX0213"},
    {"shiftjis", "shift_jis"},
    {"shiftjis2004", "SHIFT_JISX0213"},
    {"sjis_2004", "SHIFT_JISX0213"},
    {"sjisx0213", "SHIFT_JISX0213"},
    {"thai", "iso8859-11"},
    {"tis_620_0", "tis-620"},
    {"tis_620_2529_0", "tis-620"},
    {"tis_620_2529_1", "tis-620"},
    {"u16", "utf-16"},
    {"u32", "utf-32"},
    {"u7", "utf-7"},
    {"u8", "utf-8"},
    {"u_jis", "euc-jp"},
    {"unicode_1_1_utf_7", "utf-7"},
    {"unicodebigunmarked", "UTF-16BE"},
    {"unicodelittleunmarked", "UTF-16LE"},
    {"utf", "utf-8"},
    {"utf8_ucs2", "utf-8"},
    {"utf8_ucs4", "utf-8"},
    {"utf_16_be", "UTF-16BE"},
    {"utf_16_le", "UTF-16LE"},
    {"utf_32_be", "UTF-32BE"},
    {"utf_32_le", "UTF-32LE"},
    {"x_mac_japanese", "shift_jis"},
    {"x_mac_korean", "euc-kr"},
    {"x_mac_simp_chinese", "gb2312"},
    {"x_mac_trad_chinese", "big5"},
};

static int charset_alias_cmp(const void *key, const void *row)
{
    return (strcmp(key, ((const struct charset_alias *) row)->python));
}

/* charset_normalize - Python's normalize_encoding(), lower-cased, to buf */

static void charset_normalize(const char *name, size_t len, char *buf)
{
    size_t  n = 0;
    int     gap = 0;

    for (size_t i = 0; i < len && n < CHARSET_NAME_SIZE - 1; i++) {
	unsigned char c = name[i];

	if (isalnum(c) || c == '.') {
	    if (gap && n > 0 && n < CHARSET_NAME_SIZE - 2)
		buf[n++] = '_';
	    buf[n++] = tolower(c);
	    gap = 0;
	} else {
	    gap = 1;
	}
    }
    buf[n] = 0;
}

const char *charset_name(const char *name, size_t len, char *buf)
{
    const struct charset_alias *hit;

    charset_normalize(name, len, buf);
    hit = bsearch(buf, charset_aliases, sizeof(charset_aliases) / sizeof(charset_aliases[0]),
		  sizeof(charset_aliases[0]), charset_alias_cmp);
    if (hit != NULL) {
	strcpy(buf, hit->iconv);
	return (buf);
    }
    if (len >= CHARSET_NAME_SIZE)
	len = CHARSET_NAME_SIZE - 1;
    memcpy(buf, name, len);
    buf[len] = 0;
    return (buf);
}
