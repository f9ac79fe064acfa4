/* tables_test - unit tests for milter-dkim/tables.c (OpenDKIM table formats) */

#include "build_config.h"

#include <stdio.h>
#include <string.h>

#include "tables.h"
#include "tap.h"

static const struct config_spec no_specs[] = {{0}};

/* test_alignment - patterns with '*' in the domain (helper-65 F3) */

static void test_alignment(void)
{
    static const char *const alphabet[] = {"a", "b", ".", "*", "@", "ab.", ".b"};
    unsigned seed = 4242;
    int     checked = 0, bad = 0;

    ok(tables_aligned("planapulse.ai", "planapulse.ai"), "aligned: the key domain");
    ok(tables_aligned("mail.PlanaPulse.ai", "planapulse.ai"), "aligned: below it, any case");
    ok(!tables_aligned("evilplanapulse.ai", "planapulse.ai"), "not aligned: no label boundary");
    ok(!tables_aligned("planapulse.ai", "mail.planapulse.ai"), "not aligned: above it");
    ok(tables_pattern_aligned("*@planapulse.ai", "planapulse.ai"), "*@planapulse.ai: aligned");
    ok(tables_pattern_aligned("a*b@planapulse.ai", "planapulse.ai"),
       "'*' in the local part only: aligned");
    ok(tables_pattern_aligned("*.planapulse.ai", "planapulse.ai"), "*.planapulse.ai: aligned");
    ok(tables_pattern_aligned("*@*.mail.planapulse.ai", "planapulse.ai"),
       "*@*.mail.planapulse.ai: aligned");
    ok(!tables_pattern_aligned("*planapulse.ai", "planapulse.ai"),
       "*planapulse.ai: matches evilplanapulse.ai");
    ok(!tables_pattern_aligned("*@*planapulse.ai", "planapulse.ai"), "*@*planapulse.ai: no");
    ok(!tables_pattern_aligned("*", "planapulse.ai"), "*: no");
    ok(!tables_pattern_aligned("*@*.ai", "planapulse.ai"), "*@*.ai: no");
    ok(!tables_pattern_aligned("*@planapulse.ai*", "planapulse.ai"),
       "*@planapulse.ai*: matches planapulse.ai.evil.example");
    ok(!tables_pattern_aligned("x@other.example", "planapulse.ai"), "another domain: no");

    /*
     * Property: a pattern said to align matches no address whose domain
     * does not. Random patterns and addresses over a small alphabet
     * (addresses with one '@', as the strict reader gives them).
     */
    for (int round = 0; round < 300000; round++) {
	char    pattern[64] = "", addr[64] = "", local[16] = "", dom[48] = "";

	for (int k = (seed = seed * 1103515245 + 12345) >> 16 & 7; k >= 0; k--)
	    strcat(pattern, alphabet[((seed = seed * 1103515245 + 12345) >> 16) % 7]);
	strcat(pattern, (seed >> 20) & 1 ? "ab.b" : "");
	for (int k = (seed = seed * 1103515245 + 12345) >> 16 & 3; k >= 0; k--)
	    strcat(local, alphabet[((seed = seed * 1103515245 + 12345) >> 16) % 2]);
	for (int k = (seed = seed * 1103515245 + 12345) >> 16 & 7; k >= 0; k--)
	    strcat(dom, alphabet[(((seed = seed * 1103515245 + 12345) >> 16) % 3) ? 5 : 0]);
	strcat(dom, "ab.b");
	snprintf(addr, sizeof(addr), "%s@%s", local, dom);
	if (!tables_match(pattern, addr) || !tables_pattern_aligned(pattern, "ab.b"))
	    continue;
	checked++;
	if (!tables_aligned(dom, "ab.b") && bad++ == 0)
	    diag("pattern %s aligns with ab.b but matches %s", pattern, addr);
    }
    ok(checked > 100, "property: %d matches of patterns said to align", checked);
    is_int(bad, 0, "property: none of them is an unaligned domain");
}

/*
 * test_ulabels - a pattern's domain written in U-labels is read as its
 * A-labels (the From: domain is: rfc5322(3)), in the SigningTable and in
 * sender_binding; the local part's UTF-8 stays; a '*' among U-labels,
 * or U-labels that are no valid IDN, are errors
 */
static void test_ulabels(void)
{
    struct config *errors = config_read_buffer("t", "", 0, no_specs);
    struct tables t;
    const struct key_entry *keys[4];
    int     bound;

    memset(&t, 0, sizeof(t));
    tables_parse_keys(&t, errors, "k", "idn xn--bcher-kva.example:sel:/k\n");
    tables_parse_signing(&t, errors, "s", "*@b\xc3\xbc" "cher.example idn\n"
			 "B\xc3\x9c" "CHER.example idn\n"
			 "j\xc3\xb6rg@xn--bcher-kva.example idn\n");
    tables_parse_binding(&t, errors, "b", "svc j\xc3\xb6rg@b\xc3\xbc" "cher.example\n");
    is_int(errors->error_count, 0, "U-label patterns load");
    ok(t.sign_count == 3 && strcmp(t.sign[0].pattern, "*@xn--bcher-kva.example") == 0
       && strcmp(t.sign[1].pattern, "xn--bcher-kva.example") == 0,
       "read as A-labels: %s, %s", t.sign_count > 1 ? t.sign[0].pattern : "",
       t.sign_count > 1 ? t.sign[1].pattern : "");
    is_int(tables_signers(&t, "a@xn--bcher-kva.example", keys, 4), 2,
	   "a From: domain in A-labels matches the glob and the plain domain row");
    is_int(tables_signers(&t, "j\xc3\xb6rg@xn--bcher-kva.example", keys, 4), 3,
	   "a UTF-8 local part matches its own row too");
    ok(tables_binding_allows(&t, "svc", "j\xc3\xb6rg@xn--bcher-kva.example", &bound) && bound
       && !tables_binding_allows(&t, "svc", "joerg@xn--bcher-kva.example", &bound),
       "sender_binding: the U-label pattern binds to the A-label address, local part exact");
    tables_parse_signing(&t, errors, "bad", "*@*.b\xc3\xbc" "cher.example idn\n"
			 "*@\xe2\x98\x83.example idn\n");
    tables_parse_binding(&t, errors, "badb", "svc2 *@b\xfc" "cher.example\n");
    is_int(errors->error_count, 3, "a '*' among U-labels, a disallowed code point, Latin-1: "
	   "errors");
    ok(errors->error_count == 3 && strstr(errors->errors[0], "bad:1: a '*' among U-labels")
       && strstr(errors->errors[1], "bad:2: a pattern's domain in U-labels that is no valid "
		 "IDN") && strstr(errors->errors[2], "badb:1:"), "each named by file and line: %s",
       errors->error_count ? errors->errors[0] : "");
    tables_free(&t);
    config_free(&errors);
}

int     main(void)
{
    struct config *errors = config_read_buffer("t", "", 0, no_specs);
    struct tables t;
    const struct key_entry *keys[8];
    int     bound, n;

    memset(&t, 0, sizeof(t));
    tables_parse_keys(&t, errors, "key.table",
		      "# OpenDKIM KeyTable\n"
		      "rsa   planapulse.ai:rsa2026:/etc/dkim/rsa.private\n"
		      "ed    planapulse.ai:ed2026:/etc/dkim/ed.private   # trailing comment\n"
		      "staff %:staff:/etc/dkim/staff.private\n");
    tables_parse_signing(&t, errors, "signing.table",
			 "*@planapulse.ai rsa,ed\n"
			 "plana.solutions staff\n"
			 "ceo@plana.solutions rsa\n");
    tables_parse_binding(&t, errors, "binding", "svc-billing *@planapulse.ai, *@planapulse.com\n");
    is_int(errors->error_count, 0, "OpenDKIM-format tables load");
    is_int(t.key_count, 3, "three keys");
    is_str(t.key[2].domain, "%", "'%%' domain kept for lookup-time substitution");
    n = tables_signers(&t, "noreply@planapulse.ai", keys, 8);
    ok(n == 2 && keys[0] == t.key && keys[1] == t.key + 1, "*@planapulse.ai: rsa and ed, in order");
    n = tables_signers(&t, "NoReply@PlanaPulse.AI", keys, 8);
    is_int(n, 2, "matching ignores case");
    n = tables_signers(&t, "ceo@plana.solutions", keys, 8);
    ok(n == 2 && keys[0] == t.key + 2 && keys[1] == t.key, "every matching line applies");
    is_int(tables_signers(&t, "x@planapulse.ai.evil.example", keys, 8), 0,
	   "no match for a look-alike domain");
    is_int(tables_signers(&t, "x@sub.plana.solutions", keys, 8), 0,
	   "a plain domain pattern does not match subdomains");
    ok(tables_binding_allows(&t, "svc-billing", "noreply@planapulse.ai", &bound) && bound,
       "svc-billing may send as planapulse.ai");
    ok(!tables_binding_allows(&t, "svc-billing", "staff@plana.solutions", &bound) && bound,
       "svc-billing may not send as plana.solutions");
    ok(tables_binding_allows(&t, "alice", "alice@plana.solutions", &bound) && !bound,
       "an unbound user is not restricted");
    is_int(tables_signers(&t, "ceo@plana.solutions", keys, 1), 2,
	   "regression: the count is of all matches, also past max (stored: max)");
    is_int(tables_signers(&t, "ceo@plana.solutions", NULL, 0), 2, "count only (max 0)");
    ok(tables_bound(&t, "SVC-Billing") && !tables_bound(&t, "alice"),
       "tables_bound: a user with a line (any case), not one without");
    {
	struct tables star = {0};

	/* helper-119: "svc-billing@realm", a login alias Dovecot accepts,
	   was nobody's line and signed any From: */
	tables_parse_binding(&star, errors, "star", "svc-billing *@planapulse.ai\n*   -\n");
	ok(!tables_binding_allows(&star, "svc-billing@realm", "ceo@plana.solutions", &bound)
	   && bound && !tables_binding_allows(&star, "alice", "alice@planapulse.ai", &bound)
	   && bound, "a \"*  -\" row binds every user without a line of its own to nothing");
	ok(tables_binding_allows(&star, "SVC-BILLING", "x@planapulse.ai", &bound) && bound
	   && !tables_binding_allows(&star, "svc-billing", "ceo@plana.solutions", &bound),
	   "a user's own row still decides for it, not the \"*\" row");
	tables_free(&star);
	tables_parse_binding(&star, errors, "star2", "*  *@planapulse.ai\n");
	ok(tables_binding_allows(&star, "anyone", "noreply@planapulse.ai", &bound) && bound
	   && !tables_binding_allows(&star, "anyone", "ceo@plana.solutions", &bound)
	   && tables_bound(&star, "anyone"), "a \"*\" row with patterns binds the others to them");
	tables_free(&star);
    }
    ok(tables_match("a*b*c@x", "aXXbYYc@x"), "several wildcards");
    ok(!tables_match("a*b", "a"), "wildcard needs the rest");

    tables_parse_keys(&t, errors, "bad.table", "k1 nodomainhere\nrsa a:b:/x\nk2 a:b:relative\n");
    is_int(errors->error_count, 3, "three bad KeyTable lines");
    ok(errors->error_count > 0 && strstr(errors->errors[0], "bad.table:1:") != NULL,
       "errors name file and line: %s", errors->error_count ? errors->errors[0] : "");
    ok(errors->error_count > 1 && strstr(errors->errors[1], "duplicate") != NULL,
       "duplicate key name refused");
    tables_parse_signing(&t, errors, "bad.signing", "*@x.example nosuchkey\n");
    ok(strstr(errors->errors[errors->error_count - 1], "bad.signing:1: key name 1 of the line "
	      "(9 bytes, not repeated here) is not in the KeyTable (its names: ") != NULL,
       "SigningTable naming an unknown key refused: %s", errors->errors[errors->error_count - 1]);
    ok(strstr(errors->errors[errors->error_count - 1], "nosuchkey") == NULL,
       "the unknown name is not repeated (helper-121: a Secret's redis.conf given as the "
       "SigningTable printed its requirepass)");
    tables_parse_signing(&t, errors, "redis.conf", "requirepass Zq8pLkW2vR7nT4xY9bC3mD6f\n");
    ok(strstr(errors->errors[errors->error_count - 1], "Zq8pLkW2") == NULL
       && strstr(errors->errors[errors->error_count - 1], "redis.conf:1:") != NULL,
       "a password in the key field: file and line only");
    is_str(tables_strip_prefix("refile:/etc/x"), "/etc/x", "refile: prefix");
    tables_free(&t);

    /* d= and s= are written as they are: DNS names only */
    n = errors->error_count;
    tables_parse_keys(&t, errors, "names.table", "a x.example:s1;x=y:/k\nb x.example:s 1:/k\n"
		      "c x.example:s1.:/k\nd x..example:s1:/k\ne x.example;:s1:/k\n"
		      "f %:s_1-a.B2:/k\ng %.example:s:/k\n");
    is_int(errors->error_count - n, 5, "five rows whose domain or selector is not a DNS name");
    ok(errors->error_count && strstr(errors->errors[n], "names.table:1: the domain or the "
				     "selector is not a DNS name") != NULL
       && strstr(errors->errors[n], "s1;x=y") == NULL,
       "the error names the row, not its values: %s",
       errors->error_count > n ? errors->errors[n] : "");
    ok(tables_find_key(&t, "f") && tables_find_key(&t, "g") && !tables_find_key(&t, "a"),
       "'%%', '_', '-' and upper case are fine");
    tables_free(&t);

    /* a UTF-8 BOM (Windows editors) is not part of the first row */
    tables_parse_keys(&t, errors, "bom.table", "\xEF\xBB\xBFk1 bom.example:s:/k\r\n");
    tables_parse_signing(&t, errors, "bom.signing", "\xEF\xBB\xBF*@bom.example k1\r\n");
    tables_parse_binding(&t, errors, "bom.binding", "\xEF\xBB\xBFsvc *@bom.example\r\n");
    ok(tables_find_key(&t, "k1") != NULL, "BOM: the first KeyTable name is k1");
    is_int(tables_signers(&t, "a@bom.example", keys, 8), 1, "BOM: the first SigningTable row "
	   "matches");
    ok(!tables_binding_allows(&t, "svc", "a@other.example", &bound) && bound,
       "BOM: the first sender_binding row binds svc");
    tables_free(&t);
    config_free(&errors);
    test_alignment();
    test_ulabels();
    return (tap_done());
}
