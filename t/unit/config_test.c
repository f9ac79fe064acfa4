/* config_test - unit tests for common/config.c */


#include "build_config.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "tap.h"

static const struct config_spec specs[] = {
    {"name", CONFIG_STRING, "default-name", 0},
    {"enabled", CONFIG_BOOL, "no", 0},
    {"count", CONFIG_INT, "3", 0},
    {"timeout", CONFIG_DURATION, "5s", 0},
    {"max_size", CONFIG_SIZE, "25M", 0},
    {"hosts", CONFIG_LIST, "127.0.0.0/8", 0},
    {"limit", CONFIG_DIRECTIVE, NULL, CONFIG_REPEAT},
    {0},
};

static struct config *parse(const char *text)
{
    return (config_read_buffer("t.conf", text, strlen(text), specs));
}

/* one_error - the config has exactly one error, and it is this one */

static void one_error(const char *text, const char *want, const char *label)
{
    struct config *cfg = parse(text);

    is_int(cfg->error_count, 1, "%s: one error", label);
    is_str(cfg->error_count ? cfg->errors[0] : NULL, want, "%s: message", label);
    config_free(&cfg);
}

/*
 * test_pem - a key given as the configuration: one error that quotes
 * nothing of it ("q0==" reads as parameter q0; its base64 was quoted),
 * and no setting kept from it ("count = 9" is a base64 line too).
 */
static void test_pem(void)
{
    const char *pem = "-----BEGIN PRIVATE KEY-----\nMIIEvq0+abc/def\nq0==\ncount = 9\n"
	"-----END PRIVATE KEY-----\n";
    struct config *cfg = parse(pem);

    one_error(pem, "t.conf: this is a PEM file (a key or a certificate), not a configuration "
	      "file; none of it is shown", "a PEM key as configuration");
    ok(cfg->head == NULL, "nothing of it kept as a setting");
    config_free(&cfg);
    cfg = parse("# -----BEGIN in a comment\ncount = 9\n");
    is_int(cfg->error_count, 0, "\"-----BEGIN \" not at a line's start: a configuration");
    config_free(&cfg);
    /* a key's body pasted in without its BEGIN line: its last line
       ("8l4j=") was quoted as a parameter name; indented, a line was
       quoted whole as the value of the parameter above */
    one_error("name = mx1\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQ\n8l4j=\n",
	      "t.conf:2: a line of base64 (a key or a certificate pasted in?); none of the "
	      "file is shown", "a key's base64 lines pasted in");
    one_error("hosts = 10.0.0.0/8\n   MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIB==\r\n",
	      "t.conf:2: a line of base64 (a key or a certificate pasted in?); none of the "
	      "file is shown", "an indented base64 line (a continuation)");
    cfg = parse("name = MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQ\n"
		"hosts = 10.0.0.0/8,\n    192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24\n");
    is_int(cfg->error_count, 0, "a long value after \"name =\", a long list line: a "
	   "configuration");
    config_free(&cfg);
}

static void test_valid(void)
{
    struct config *cfg = parse("# comment\n"
			       "name = mx1   # trailing comment\n"
			       "enabled = yes\n"
			       "timeout = 100ms\n"
			       "hosts = 10.0.0.0/8,\n"
			       "    192.0.2.0/24\n"
			       "\t::1\n"
			       "limit a = rate=1/1m\n"
			       "limit b rate=2/1m\n"
			       "\n");
    const struct config_entry *entry;

    is_int(cfg->error_count, 0, "valid file has no errors");
    is_str(config_get_str(cfg, "name"), "mx1", "string value, inline comment dropped");
    is_int(config_get_bool(cfg, "enabled"), 1, "bool yes");
    is_int(config_get_duration(cfg, "timeout"), 100, "100ms");
    is_str(config_get_str(cfg, "hosts"), "10.0.0.0/8, 192.0.2.0/24 ::1",
	   "continuation lines joined with one space");
    is_int(config_get_int(cfg, "count"), 3, "default integer");
    is_int(config_get_size(cfg, "max_size"), 25 * 1024 * 1024, "default size 25M");
    entry = config_next(cfg, NULL, "limit");
    is_str(entry ? entry->value : NULL, "a = rate=1/1m", "first directive keeps its '='");
    entry = entry ? config_next(cfg, entry, "limit") : NULL;
    is_str(entry ? entry->value : NULL, "b rate=2/1m", "second directive without '='");
    is_int(entry ? entry->line : 0, 9, "directive line number");
    config_free(&cfg);
    ok(cfg == NULL, "config_free sets the pointer to NULL");
}

static void test_errors(void)
{
    char   *longline = malloc(CONFIG_LINE_MAX + 20);

    one_error("name = a\ntimeout 10s\n", "t.conf:2: missing '=' after \"timeout\"",
	      "missing =");
    one_error("bogus = 1\n", "t.conf:1: unknown parameter \"bogus\"", "unknown name");
    one_error("timeout = 10x\n",
	      "t.conf:1: bad value \"10x\" for \"timeout\": unknown time unit "
	      "(use ms, s, m, h, d or w)", "bad duration unit");
    one_error("timeout = s\n",
	      "t.conf:1: bad value \"s\" for \"timeout\": expected a number",
	      "duration without number");
    one_error("max_size = 20Q\n",
	      "t.conf:1: bad value \"20Q\" for \"max_size\": unknown size unit (use k, M or G)",
	      "bad size unit");
    one_error("max_size = 99999999999999999999\n",
	      "t.conf:1: bad value \"99999999999999999999\" for \"max_size\": number too large",
	      "size overflow");
    one_error("enabled = maybe\n",
	      "t.conf:1: bad value \"maybe\" for \"enabled\": expected yes or no", "bad bool");
    one_error("timeout = \"10s\"\n",
	      "t.conf:1: bad value \"\"10s\"\" for \"timeout\": the value is in quotes: write "
	      "it without them (values are taken as written, as in Postfix's main.cf)",
	      "a quoted value: said so (was \"expected a number\")");
    one_error("enabled = 'yes'\n",
	      "t.conf:1: bad value \"'yes'\" for \"enabled\": the value is in quotes: write "
	      "it without them (values are taken as written, as in Postfix's main.cf)",
	      "single quotes too");
    memset(longline, 'x', CONFIG_LINE_MAX + 10);
    memcpy(longline, "name = ", 7);
    strcpy(longline + CONFIG_LINE_MAX + 10, "\n");
    one_error(longline, "t.conf:1: line too long (more than 4096 bytes)", "overlong line");
    free(longline);
    one_error("hosts = 10.0.0.0/8,\n# the next line was deleted\n",
	      "t.conf:1: value of \"hosts\" ends with ',': unterminated continuation "
	      "(the next line must start with whitespace)", "unterminated continuation");
    one_error("  192.0.2.0/24\nname = x\n",
	      "t.conf:1: continuation line without a preceding parameter",
	      "orphan continuation");
    one_error("= value\n", "t.conf:1: expected a parameter name, found \"= value\"",
	      "no name");
    /* a private key given as the configuration: no base64 in the errors */
    one_error("MIICdQIBADANBgkqhkiG9w0BAQEFAASCAl8wggJbAgEAAoGBAKze/x\n",
	      "t.conf:1: a line of base64 (a key or a certificate pasted in?); none of the "
	      "file is shown", "a base64 line is not quoted");
    one_error("/LniSDPIegYqpHxUB6DJDuFNtgIrmZ1yYkZYt8k7nHv13\n",
	      "t.conf:1: a line of base64 (a key or a certificate pasted in?); none of the "
	      "file is shown", "a base64 line that starts with '/' is not quoted");
    one_error("MIICdQIBADANBgkqhkiG9w0BAQEFAASCAl8wgg\n",
	      "t.conf:1: unknown parameter (a name of 38 characters, not shown: "
	      "is this a configuration file?)", "a shorter one: a long name, not quoted");
    one_error("Socket = x\n", "t.conf:1: unknown parameter \"Socket\"",
	      "a name followed by \" =\" is quoted");
    one_error("\xEF\xBB\xBF" "bogus = 1\n", "t.conf:1: unknown parameter \"bogus\"",
	      "a UTF-8 BOM is not part of the first name");
}

static void test_values(void)
{
    long long v;
    int     flag;

    ok(config_parse_duration("10s", &v) == NULL && v == 10000, "10s");
    ok(config_parse_duration("5m", &v) == NULL && v == 300000, "5m");
    ok(config_parse_duration("1h", &v) == NULL && v == 3600000, "1h");
    ok(config_parse_duration("1d", &v) == NULL && v == 86400000, "1d");
    ok(config_parse_duration("7", &v) == NULL && v == 7000, "bare number is seconds");
    ok(config_parse_duration("-1s", &v) != NULL, "negative duration refused");
    ok(config_parse_size("10k", &v) == NULL && v == 10240, "10k");
    ok(config_parse_size("20M", &v) == NULL && v == 20971520, "20M");
    ok(config_parse_size("1G", &v) == NULL && v == 1073741824, "1G");
    ok(config_parse_size("512", &v) == NULL && v == 512, "bare size is bytes");
    ok(config_parse_int("-42", &v) == NULL && v == -42, "negative integer");
    ok(config_parse_int("42x", &v) != NULL, "integer with garbage refused");
    ok(config_parse_bool("off", &flag) == NULL && flag == 0, "off is false");
}

static void test_list(void)
{
    int     count;
    char  **list = config_split_list(" a, b  c,,d ", &count);

    is_int(count, 4, "list item count");
    is_str(list[0], "a", "first item");
    is_str(list[3], "d", "last item");
    ok(list[4] == NULL, "list NULL-terminated");
    config_list_free(&list);
    ok(list == NULL, "list freed");
}

static void test_file(void)
{
    char    path[] = "/tmp/config_test.XXXXXX";
    int     fd = mkstemp(path);
    struct config *cfg;
    const char text[] = "name = from-file\n";

    ok(fd >= 0 && write(fd, text, sizeof(text) - 1) == sizeof(text) - 1, "temp file");
    close(fd);
    cfg = config_read(path, specs);
    is_str(config_get_str(cfg, "name"), "from-file", "config_read reads a file");
    config_free(&cfg);
    unlink(path);
    cfg = config_read("/nonexistent/x.conf", specs);
    is_str(cfg->error_count ? cfg->errors[0] : NULL,
	   "/nonexistent/x.conf: cannot read: No such file or directory", "missing file");
    config_free(&cfg);
}

int     main(void)
{
    test_valid();
    test_errors();
    test_values();
    test_list();
    test_file();
    test_pem();
    return (tap_done());
}
