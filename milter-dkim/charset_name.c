/*
 * NAME
 *	charset_name 3
 * SUMMARY
 *	the name iconv(3) opens for a charset name, as Python reads it
 * SYNOPSIS
 *	#include "charset_name.h"
 *
 *	const char *charset_name(name, len, buf)
 *
 *	int	charset_python_reads(name, len)
 * DESCRIPTION
 *	Mail names charsets as its writers spell them, and the reader the
 *	project follows (Python's email) decodes what it has a codec for:
 *	Outlook's Korean "ks_c_5601-1987", "latin-1", "unicode-1-1-utf-7",
 *	"utf_16_be", "x-mac-japanese", none of them a name glibc's
 *	iconv(3) opens. Python reads a name lower-cased, every run of
 *	characters other than letters, digits and '.' made one '_'
 *	(encodings.normalize_encoding()), and then through its aliases. A
 *	name it has no codec for (IBM1047, IBM285, x-unknown; glibc opens
 *	the first two as EBCDIC) is no charset: Python's email reads such a
 *	word's bytes as ASCII. Converted by glibc instead, a bound user's
 *	"=?IBM1047?q?ceo=40other.example?=" was harmless mojibake to the
 *	milter and "ceo@other.example" to readers (helper-124).
 *
 *	charset_name() returns, in buf (CHARSET_NAME_SIZE bytes), the name
 *	iconv(3) opens for the codec Python reads the len bytes at name as,
 *	or NULL: Python has no such codec, or glibc lacks it (hz, cp1125,
 *	mac-greek, iso2022_jp_1); charset_python_reads() tells the two
 *	apart (1: Python has a codec for the name).
 *
 *	The table holds every name Python 3.11 reads (encodings.aliases,
 *	its codec names, the encodings package's modules, email.charset's
 *	aliases; text encodings only), normalized, with glibc 2.36's name
 *	for that codec: t/data/charset_aliases.py writes it, and
 *	t/unit/charset_name_test.c checks that each target opens.
 */

#include "build_config.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "charset_name.h"

struct charset_alias {
    const char *python;			/* normalized as Python does */
    const char *iconv;			/* glibc's name; NULL: it has none */
    int     alias;			/* found with '.' as '_' too */
};

/* sorted by python (bsearch) */
static const struct charset_alias charset_aliases[] = {
    /* t/data/charset_aliases.py (Python 3.11, glibc 2.36) */
    {"037", "cp037", 1},
    {"1026", "cp1026", 1},
    {"1125", NULL, 1},
    {"1140", "cp1140", 1},
    {"1250", "cp1250", 1},
    {"1251", "cp1251", 1},
    {"1252", "cp1252", 1},
    {"1253", "cp1253", 1},
    {"1254", "cp1254", 1},
    {"1255", "cp1255", 1},
    {"1256", "cp1256", 1},
    {"1257", "cp1257", 1},
    {"1258", "cp1258", 1},
    {"273", "cp273", 1},
    {"424", "cp424", 1},
    {"437", "cp437", 1},
    {"500", "cp500", 1},
    {"646", "ascii", 1},
    {"775", "cp775", 1},
    {"850", "cp850", 1},
    {"852", "cp852", 1},
    {"855", "cp855", 1},
    {"857", "cp857", 1},
    {"858", "cp858", 1},
    {"860", "cp860", 1},
    {"861", "cp861", 1},
    {"862", "cp862", 1},
    {"863", "cp863", 1},
    {"864", "cp864", 1},
    {"865", "cp865", 1},
    {"866", "cp866", 1},
    {"869", "cp869", 1},
    {"8859", "iso8859-1", 1},
    {"932", "cp932", 1},
    {"936", "gbk", 1},
    {"949", "cp949", 1},
    {"950", "cp950", 1},
    {"ansi_x3.4_1968", "ascii", 1},
    {"ansi_x3.4_1986", "ascii", 1},
    {"ansi_x3_4_1968", "ascii", 1},
    {"arabic", "iso8859-6", 1},
    {"ascii", "ascii", 0},
    {"asmo_708", "iso8859-6", 1},
    {"big5", "big5", 0},
    {"big5_hkscs", "BIG5-HKSCS", 1},
    {"big5_tw", "big5", 1},
    {"big5hkscs", "BIG5-HKSCS", 0},
    {"charmap", NULL, 0},
    {"chinese", "gb2312", 1},
    {"cp037", "cp037", 0},
    {"cp1006", NULL, 0},
    {"cp1026", "cp1026", 0},
    {"cp1051", "HP-ROMAN8", 1},
    {"cp1125", NULL, 0},
    {"cp1140", "cp1140", 0},
    {"cp1250", "cp1250", 0},
    {"cp1251", "cp1251", 0},
    {"cp1252", "cp1252", 0},
    {"cp1253", "cp1253", 0},
    {"cp1254", "cp1254", 0},
    {"cp1255", "cp1255", 0},
    {"cp1256", "cp1256", 0},
    {"cp1257", "cp1257", 0},
    {"cp1258", "cp1258", 0},
    {"cp1361", "johab", 1},
    {"cp154", "PT154", 1},
    {"cp273", "cp273", 0},
    {"cp367", "ascii", 1},
    {"cp424", "cp424", 0},
    {"cp437", "cp437", 0},
    {"cp500", "cp500", 0},
    {"cp65001", "utf-8", 1},
    {"cp720", NULL, 0},
    {"cp737", "cp737", 0},
    {"cp775", "cp775", 0},
    {"cp819", "iso8859-1", 1},
    {"cp850", "cp850", 0},
    {"cp852", "cp852", 0},
    {"cp855", "cp855", 0},
    {"cp856", "cp856", 0},
    {"cp857", "cp857", 0},
    {"cp858", "cp858", 0},
    {"cp860", "cp860", 0},
    {"cp861", "cp861", 0},
    {"cp862", "cp862", 0},
    {"cp863", "cp863", 0},
    {"cp864", "cp864", 0},
    {"cp865", "cp865", 0},
    {"cp866", "cp866", 0},
    {"cp866u", NULL, 1},
    {"cp869", "cp869", 0},
    {"cp874", "cp874", 0},
    {"cp875", "cp875", 0},
    {"cp932", "cp932", 0},
    {"cp936", "gbk", 1},
    {"cp949", "cp949", 0},
    {"cp950", "cp950", 0},
    {"cp_gr", "cp869", 1},
    {"cp_is", "cp861", 1},
    {"csascii", "ascii", 1},
    {"csbig5", "big5", 1},
    {"csibm037", "cp037", 1},
    {"csibm1026", "cp1026", 1},
    {"csibm273", "cp273", 1},
    {"csibm424", "cp424", 1},
    {"csibm500", "cp500", 1},
    {"csibm855", "cp855", 1},
    {"csibm857", "cp857", 1},
    {"csibm858", "cp858", 1},
    {"csibm860", "cp860", 1},
    {"csibm861", "cp861", 1},
    {"csibm863", "cp863", 1},
    {"csibm864", "cp864", 1},
    {"csibm865", "cp865", 1},
    {"csibm866", "cp866", 1},
    {"csibm869", "cp869", 1},
    {"csiso2022jp", "ISO-2022-JP", 1},
    {"csiso2022kr", "ISO-2022-KR", 1},
    {"csiso58gb231280", "gb2312", 1},
    {"csisolatin1", "iso8859-1", 1},
    {"csisolatin2", "iso8859-2", 1},
    {"csisolatin3", "iso8859-3", 1},
    {"csisolatin4", "iso8859-4", 1},
    {"csisolatin5", "iso8859-9", 1},
    {"csisolatin6", "iso8859-10", 1},
    {"csisolatinarabic", "iso8859-6", 1},
    {"csisolatincyrillic", "iso8859-5", 1},
    {"csisolatingreek", "iso8859-7", 1},
    {"csisolatinhebrew", "iso8859-8", 1},
    {"cskoi8r", "koi8-r", 1},
    {"cspc775baltic", "cp775", 1},
    {"cspc850multilingual", "cp850", 1},
    {"cspc862latinhebrew", "cp862", 1},
    {"cspc8codepage437", "cp437", 1},
    {"cspcp852", "cp852", 1},
    {"csptcp154", "PT154", 1},
    {"csshiftjis", "shift_jis", 1},
    {"cyrillic", "iso8859-5", 1},
    {"cyrillic_asian", "PT154", 1},
    {"ebcdic_cp_be", "cp500", 1},
    {"ebcdic_cp_ca", "cp037", 1},
    {"ebcdic_cp_ch", "cp500", 1},
    {"ebcdic_cp_he", "cp424", 1},
    {"ebcdic_cp_nl", "cp037", 1},
    {"ebcdic_cp_us", "cp037", 1},
    {"ebcdic_cp_wt", "cp037", 1},
    {"ecma_114", "iso8859-6", 1},
    {"ecma_118", "iso8859-7", 1},
    {"elot_928", "iso8859-7", 1},
    {"euc_cn", "gb2312", 1},
    {"euc_jis2004", "EUC-JISX0213", 1},
    {"euc_jis_2004", "EUC-JISX0213", 0},
    {"euc_jisx0213", "EUC-JISX0213", 0},
    {"euc_jp", "euc-jp", 0},
    {"euc_kr", "euc-kr", 0},
    {"euccn", "gb2312", 1},
    {"eucgb2312_cn", "gb2312", 1},
    {"eucjis2004", "EUC-JISX0213", 1},
    {"eucjisx0213", "EUC-JISX0213", 1},
    {"eucjp", "euc-jp", 1},
    {"euckr", "euc-kr", 1},
    {"gb18030", "gb18030", 0},
    {"gb18030_2000", "gb18030", 1},
    {"gb2312", "gb2312", 0},
    {"gb2312_1980", "gb2312", 1},
    {"gb2312_80", "gb2312", 1},
    {"gbk", "gbk", 0},
    {"greek", "iso8859-7", 1},
    {"greek8", "iso8859-7", 1},
    {"hebrew", "iso8859-8", 1},
    {"hkscs", "BIG5-HKSCS", 1},
    {"hp_roman8", "HP-ROMAN8", 0},
    {"hz", NULL, 0},
    {"hz_gb", NULL, 1},
    {"hz_gb_2312", NULL, 1},
    {"hzgb", NULL, 1},
    {"ibm037", "cp037", 1},
    {"ibm039", "cp037", 1},
    {"ibm1026", "cp1026", 1},
    {"ibm1051", "HP-ROMAN8", 1},
    {"ibm1125", NULL, 1},
    {"ibm1140", "cp1140", 1},
    {"ibm273", "cp273", 1},
    {"ibm367", "ascii", 1},
    {"ibm424", "cp424", 1},
    {"ibm437", "cp437", 1},
    {"ibm500", "cp500", 1},
    {"ibm775", "cp775", 1},
    {"ibm819", "iso8859-1", 1},
    {"ibm850", "cp850", 1},
    {"ibm852", "cp852", 1},
    {"ibm855", "cp855", 1},
    {"ibm857", "cp857", 1},
    {"ibm858", "cp858", 1},
    {"ibm860", "cp860", 1},
    {"ibm861", "cp861", 1},
    {"ibm862", "cp862", 1},
    {"ibm863", "cp863", 1},
    {"ibm864", "cp864", 1},
    {"ibm865", "cp865", 1},
    {"ibm866", "cp866", 1},
    {"ibm869", "cp869", 1},
    {"idna", NULL, 0},
    {"iso2022_jp", "ISO-2022-JP", 0},
    {"iso2022_jp_1", NULL, 0},
    {"iso2022_jp_2", "ISO-2022-JP-2", 0},
    {"iso2022_jp_2004", NULL, 0},
    {"iso2022_jp_3", "ISO-2022-JP-3", 0},
    {"iso2022_jp_ext", NULL, 0},
    {"iso2022_kr", "ISO-2022-KR", 0},
    {"iso2022jp", "ISO-2022-JP", 1},
    {"iso2022jp_1", NULL, 1},
    {"iso2022jp_2", "ISO-2022-JP-2", 1},
    {"iso2022jp_2004", NULL, 1},
    {"iso2022jp_3", "ISO-2022-JP-3", 1},
    {"iso2022jp_ext", NULL, 1},
    {"iso2022kr", "ISO-2022-KR", 1},
    {"iso646_us", "ascii", 1},
    {"iso8859", "iso8859-1", 1},
    {"iso8859_1", "iso8859-1", 1},
    {"iso8859_10", "iso8859-10", 0},
    {"iso8859_11", "iso8859-11", 0},
    {"iso8859_13", "iso8859-13", 0},
    {"iso8859_14", "iso8859-14", 0},
    {"iso8859_15", "iso8859-15", 0},
    {"iso8859_16", "iso8859-16", 0},
    {"iso8859_2", "iso8859-2", 0},
    {"iso8859_3", "iso8859-3", 0},
    {"iso8859_4", "iso8859-4", 0},
    {"iso8859_5", "iso8859-5", 0},
    {"iso8859_6", "iso8859-6", 0},
    {"iso8859_7", "iso8859-7", 0},
    {"iso8859_8", "iso8859-8", 0},
    {"iso8859_9", "iso8859-9", 0},
    {"iso_2022_jp", "ISO-2022-JP", 1},
    {"iso_2022_jp_1", NULL, 1},
    {"iso_2022_jp_2", "ISO-2022-JP-2", 1},
    {"iso_2022_jp_2004", NULL, 1},
    {"iso_2022_jp_3", "ISO-2022-JP-3", 1},
    {"iso_2022_jp_ext", NULL, 1},
    {"iso_2022_kr", "ISO-2022-KR", 1},
    {"iso_646.irv_1991", "ascii", 1},
    {"iso_8859_1", "iso8859-1", 1},
    {"iso_8859_10", "iso8859-10", 1},
    {"iso_8859_10_1992", "iso8859-10", 1},
    {"iso_8859_11", "iso8859-11", 1},
    {"iso_8859_11_2001", "iso8859-11", 1},
    {"iso_8859_13", "iso8859-13", 1},
    {"iso_8859_14", "iso8859-14", 1},
    {"iso_8859_14_1998", "iso8859-14", 1},
    {"iso_8859_15", "iso8859-15", 1},
    {"iso_8859_16", "iso8859-16", 1},
    {"iso_8859_16_2001", "iso8859-16", 1},
    {"iso_8859_1_1987", "iso8859-1", 1},
    {"iso_8859_2", "iso8859-2", 1},
    {"iso_8859_2_1987", "iso8859-2", 1},
    {"iso_8859_3", "iso8859-3", 1},
    {"iso_8859_3_1988", "iso8859-3", 1},
    {"iso_8859_4", "iso8859-4", 1},
    {"iso_8859_4_1988", "iso8859-4", 1},
    {"iso_8859_5", "iso8859-5", 1},
    {"iso_8859_5_1988", "iso8859-5", 1},
    {"iso_8859_6", "iso8859-6", 1},
    {"iso_8859_6_1987", "iso8859-6", 1},
    {"iso_8859_7", "iso8859-7", 1},
    {"iso_8859_7_1987", "iso8859-7", 1},
    {"iso_8859_8", "iso8859-8", 1},
    {"iso_8859_8_1988", "iso8859-8", 1},
    {"iso_8859_9", "iso8859-9", 1},
    {"iso_8859_9_1989", "iso8859-9", 1},
    {"iso_celtic", "iso8859-14", 1},
    {"iso_ir_100", "iso8859-1", 1},
    {"iso_ir_101", "iso8859-2", 1},
    {"iso_ir_109", "iso8859-3", 1},
    {"iso_ir_110", "iso8859-4", 1},
    {"iso_ir_126", "iso8859-7", 1},
    {"iso_ir_127", "iso8859-6", 1},
    {"iso_ir_138", "iso8859-8", 1},
    {"iso_ir_144", "iso8859-5", 1},
    {"iso_ir_148", "iso8859-9", 1},
    {"iso_ir_157", "iso8859-10", 1},
    {"iso_ir_166", "tis-620", 1},
    {"iso_ir_199", "iso8859-14", 1},
    {"iso_ir_226", "iso8859-16", 1},
    {"iso_ir_58", "gb2312", 1},
    {"iso_ir_6", "ascii", 1},
    {"jisx0213", "EUC-JISX0213", 1},
    {"johab", "johab", 0},
    {"koi8_r", "koi8-r", 0},
    {"koi8_t", "koi8-t", 0},
    {"koi8_u", "koi8-u", 0},
    {"korean", "euc-kr", 1},
    {"ks_c_5601", "euc-kr", 1},
    {"ks_c_5601_1987", "euc-kr", 1},
    {"ks_x_1001", "euc-kr", 1},
    {"ksc5601", "euc-kr", 1},
    {"ksx1001", "euc-kr", 1},
    {"kz1048", "RK1048", 0},
    {"kz_1048", "RK1048", 1},
    {"l1", "iso8859-1", 1},
    {"l10", "iso8859-16", 1},
    {"l2", "iso8859-2", 1},
    {"l3", "iso8859-3", 1},
    {"l4", "iso8859-4", 1},
    {"l5", "iso8859-9", 1},
    {"l6", "iso8859-10", 1},
    {"l7", "iso8859-13", 1},
    {"l8", "iso8859-14", 1},
    {"l9", "iso8859-15", 1},
    {"latin", "iso8859-1", 1},
    {"latin1", "iso8859-1", 1},
    {"latin10", "iso8859-16", 1},
    {"latin2", "iso8859-2", 1},
    {"latin3", "iso8859-3", 1},
    {"latin4", "iso8859-4", 1},
    {"latin5", "iso8859-9", 1},
    {"latin6", "iso8859-10", 1},
    {"latin7", "iso8859-13", 1},
    {"latin8", "iso8859-14", 1},
    {"latin9", "iso8859-15", 1},
    {"latin_1", "iso8859-1", 0},
    {"mac_arabic", NULL, 0},
    {"mac_centeuro", "MAC-CENTRALEUROPE", 1},
    {"mac_croatian", NULL, 0},
    {"mac_cyrillic", "MAC-CYRILLIC", 0},
    {"mac_farsi", NULL, 0},
    {"mac_greek", NULL, 0},
    {"mac_iceland", "MAC-IS", 0},
    {"mac_latin2", "MAC-CENTRALEUROPE", 0},
    {"mac_roman", "MACINTOSH", 0},
    {"mac_romanian", NULL, 0},
    {"mac_turkish", NULL, 0},
    {"maccentraleurope", "MAC-CENTRALEUROPE", 1},
    {"maccyrillic", "MAC-CYRILLIC", 1},
    {"macgreek", NULL, 1},
    {"maciceland", "MAC-IS", 1},
    {"macintosh", "MACINTOSH", 1},
    {"maclatin2", "MAC-CENTRALEUROPE", 1},
    {"macroman", "MACINTOSH", 1},
    {"macturkish", NULL, 1},
    {"ms1361", "johab", 1},
    {"ms932", "cp932", 1},
    {"ms936", "gbk", 1},
    {"ms949", "cp949", 1},
    {"ms950", "cp950", 1},
    {"ms_kanji", "cp932", 1},
    {"mskanji", "cp932", 1},
    {"palmos", NULL, 0},
    {"pt154", "PT154", 1},
    {"ptcp154", "PT154", 0},
    {"punycode", NULL, 0},
    {"r8", "HP-ROMAN8", 1},
    {"raw_unicode_escape", NULL, 0},
    {"rk1048", "RK1048", 1},
    {"roman8", "HP-ROMAN8", 1},
    {"ruscii", NULL, 1},
    {"s_jis", "shift_jis", 1},
    {"s_jis_2004", "SHIFT_JISX0213", 1},
    {"s_jisx0213", "SHIFT_JISX0213", 1},
    {"shift_jis", "shift_jis", 0},
    {"shift_jis_2004", "SHIFT_JISX0213", 0},
    {"shift_jisx0213", "SHIFT_JISX0213", 0},
    {"shiftjis", "shift_jis", 1},
    {"shiftjis2004", "SHIFT_JISX0213", 1},
    {"shiftjisx0213", "SHIFT_JISX0213", 1},
    {"sjis", "shift_jis", 1},
    {"sjis_2004", "SHIFT_JISX0213", 1},
    {"sjisx0213", "SHIFT_JISX0213", 1},
    {"strk1048_2002", "RK1048", 1},
    {"thai", "iso8859-11", 1},
    {"tis620", "tis-620", 1},
    {"tis_620", "tis-620", 0},
    {"tis_620_0", "tis-620", 1},
    {"tis_620_2529_0", "tis-620", 1},
    {"tis_620_2529_1", "tis-620", 1},
    {"u16", "utf-16", 1},
    {"u32", "utf-32", 1},
    {"u7", "utf-7", 1},
    {"u8", "utf-8", 1},
    {"u_jis", "euc-jp", 1},
    {"uhc", "cp949", 1},
    {"ujis", "euc-jp", 1},
    {"undefined", NULL, 0},
    {"unicode_1_1_utf_7", "utf-7", 1},
    {"unicode_escape", NULL, 0},
    {"unicodebigunmarked", "UTF-16BE", 1},
    {"unicodelittleunmarked", "UTF-16LE", 1},
    {"us", "ascii", 1},
    {"us_ascii", "ascii", 1},
    {"utf", "utf-8", 1},
    {"utf16", "utf-16", 1},
    {"utf32", "utf-32", 1},
    {"utf7", "utf-7", 1},
    {"utf8", "utf-8", 1},
    {"utf8_ucs2", "utf-8", 1},
    {"utf8_ucs4", "utf-8", 1},
    {"utf_16", "utf-16", 0},
    {"utf_16_be", "UTF-16BE", 0},
    {"utf_16_le", "UTF-16LE", 0},
    {"utf_16be", "UTF-16BE", 1},
    {"utf_16le", "UTF-16LE", 1},
    {"utf_32", "utf-32", 0},
    {"utf_32_be", "UTF-32BE", 0},
    {"utf_32_le", "UTF-32LE", 0},
    {"utf_32be", "UTF-32BE", 1},
    {"utf_32le", "UTF-32LE", 1},
    {"utf_7", "utf-7", 0},
    {"utf_8", "utf-8", 0},
    {"utf_8_sig", NULL, 0},
    {"windows_1250", "cp1250", 1},
    {"windows_1251", "cp1251", 1},
    {"windows_1252", "cp1252", 1},
    {"windows_1253", "cp1253", 1},
    {"windows_1254", "cp1254", 1},
    {"windows_1255", "cp1255", 1},
    {"windows_1256", "cp1256", 1},
    {"windows_1257", "cp1257", 1},
    {"windows_1258", "cp1258", 1},
    {"x_mac_japanese", "shift_jis", 1},
    {"x_mac_korean", "euc-kr", 1},
    {"x_mac_simp_chinese", "gb2312", 1},
    {"x_mac_trad_chinese", "big5", 1},
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

/* charset_find - the table's row for name as Python reads it, or NULL */

static const struct charset_alias *charset_find(const char *name, size_t len, char *buf)
{
    const struct charset_alias *hit;
    char   *dot;
    int     retried = 0;

    charset_normalize(name, len, buf);
    for (;;) {				/* Python: then with '.' as '_' */
	hit = bsearch(buf, charset_aliases, sizeof(charset_aliases) / sizeof(charset_aliases[0]),
		      sizeof(charset_aliases[0]), charset_alias_cmp);
	if (hit != NULL || (dot = strchr(buf, '.')) == NULL)
	    return (hit == NULL || !retried || hit->alias ? hit : NULL);
	for (; dot != NULL; dot = strchr(dot, '.'))
	    *dot = '_';
	retried = 1;
    }
}

const char *charset_name(const char *name, size_t len, char *buf)
{
    const struct charset_alias *hit = charset_find(name, len, buf);

    if (hit == NULL || hit->iconv == NULL)
	return (NULL);
    strcpy(buf, hit->iconv);
    return (buf);
}

int     charset_python_reads(const char *name, size_t len)
{
    char    buf[CHARSET_NAME_SIZE];

    return (charset_find(name, len, buf) != NULL);
}
