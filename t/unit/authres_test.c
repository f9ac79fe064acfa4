/* authres_test - unit tests for lmtp-webhook/authres.c and dkimsig.c */

#include "build_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "authres.h"
#include "dkimsig.h"
#include "tap.h"

#define ID "mx.planapulse.test"

/* auth - authres_authentication() as parsed JSON (the caller decrefs) */

static json_t *auth(const char *ar, const char *from)
{
    char   *text = authres_authentication(ar, from, from ? 1 : 0, ID, NULL);
    json_t *j = json_loads(text, 0, NULL);

    free(text);
    return (j);
}

static const char *get(json_t *j, const char *path)
{
    static char out[256];
    char    buf[256], *tok, *save = NULL;
    json_t *v = j;

    snprintf(buf, sizeof(buf), "%s", path);
    for (tok = strtok_r(buf, ".", &save); tok && v; tok = strtok_r(NULL, ".", &save))
	v = json_is_array(v) ? json_array_get(v, (size_t) atoi(tok)) : json_object_get(v, tok);
    if (v == NULL)
	return ("(absent)");
    if (json_is_string(v))
	return (json_string_value(v));
    if (json_is_null(v))
	return ("null");
    if (json_is_boolean(v))
	return (json_is_true(v) ? "true" : "false");
    snprintf(out, sizeof(out), "%s", json_is_array(v) ? "[array]" : "[other]");
    return (out);
}

static void trusted(void)
{
    ok(authres_trusted(ID "; dkim=pass", strlen(ID "; dkim=pass"), ID), "plain id");
    ok(authres_trusted(" (c) \"" ID "\" (c)\r\n\t1 ; none",
		       strlen(" (c) \"" ID "\" (c)\r\n\t1 ; none"), ID),
       "comments, quoted id, version, folding");
    ok(authres_trusted("MX.PlanaPulse.Test.; spf=pass", 29, ID), "case and a trailing dot");
    ok(!authres_trusted(ID ".evil; dkim=pass", strlen(ID ".evil; dkim=pass"), ID),
       "a longer id is another id");
    ok(!authres_trusted("evil (" ID ") ; dkim=pass", strlen("evil (" ID ") ; dkim=pass"), ID),
       "our id inside a comment is not our id");
    ok(!authres_trusted("(" ID "; dkim=pass", strlen("(" ID "; dkim=pass"), ID),
       "unterminated comment: unreadable, not trusted");
    ok(!authres_trusted(ID "\0; dkim=pass", strlen(ID) + 12, ID), "a NUL: not trusted");
    ok(!authres_trusted(ID "; dkim=pass", strlen(ID "; dkim=pass"), NULL),
       "no trusted id configured: nothing trusted");
    ok(!authres_trusted(ID "; dkim=pass", strlen(ID "; dkim=pass"), ""), "empty trusted id");
    ok(!authres_trusted("\"mx planapulse.test\"; x=y", 25, "mx planapulse.test"),
       "a quoted id that is no token is refused (the milter's rule)");
}

static void parse(void)
{
    struct authres ar;

    ok(authres_parse(ID "; none", &ar) == NULL && ar.count == 0, "\"; none\": no result");
    authres_free(&ar);
    ok(authres_parse(ID " 1 ;\r\n\tdkim/1 (v) = (r) PASS (good) reason=\"x; y\" "
		     "header (c) . (c) d = vendor.test header.s=s1 header.b=ab/c+d=;"
		     " spf=pass smtp.mailfrom=\"a b\"@Vendor.Test ;dmarc=pass header.from=vendor.test",
		     &ar) == NULL, "every RFC 8601 form");
    is_int(ar.count, 3, "three resinfos");
    if (ar.count == 3) {
	is_str(ar.res[0].method, "dkim", "method, lower case, version dropped");
	is_str(ar.res[0].result, "pass", "result lower-cased");
	is_int(ar.res[0].nprops, 4, "reason and three properties");
	is_str(ar.res[0].props[0].value, "x; y", "quoted reason with a ';'");
	is_str(ar.res[0].props[1].name, "header.d", "CFWS around the '.'");
	is_str(ar.res[0].props[1].value, "vendor.test", "header.d");
	is_str(ar.res[0].props[3].value, "ab/c+d=", "header.b base64");
	is_str(ar.res[1].props[0].value, "a b@Vendor.Test", "quoted local part @ domain");
    }
    authres_free(&ar);
    ok(authres_parse(ID "; dkim=pass header.d=\"v\xc3\xa9.test\"", &ar) != NULL,
       "8-bit bytes: unreadable");
    ok(authres_parse(ID "; dkim pass", &ar) != NULL, "no '=': unreadable");
    ok(authres_parse(ID "; dkim=pass (", &ar) != NULL, "unterminated comment: unreadable");
    ok(authres_parse(ID "; dkim=", &ar) != NULL, "no result: unreadable");
    ok(authres_parse(ID, &ar) != NULL, "no resinfo");
    ok(authres_parse(ID "; none; dkim=pass", &ar) != NULL, "none then more: unreadable");
    ok(authres_parse(ID "; dkim=pass header.d=", &ar) == NULL, "an empty pvalue is a value");
    authres_free(&ar);
}

static void authentication(void)
{
    json_t *j;

    j = auth(ID "; dkim=pass header.d=vendor.test header.s=s1; spf=pass "
	     "smtp.mailfrom=billing@mail.vendor.test; dmarc=pass (p=reject) header.from=vendor.test "
	     "policy.dmarc=reject", "Billing <billing@Vendor.Test>");
    is_str(get(j, "authserv_id"), ID, "authserv_id");
    is_str(get(j, "from_domain"), "vendor.test", "from_domain, lower case");
    is_str(get(j, "dmarc"), "pass", "dmarc");
    is_str(get(j, "dmarc_policy"), "reject", "dmarc_policy");
    is_str(get(j, "dkim.0.domain"), "vendor.test", "dkim domain");
    is_str(get(j, "dkim.0.selector"), "s1", "dkim selector");
    is_str(get(j, "dkim.0.aligned"), "true", "dkim aligned");
    is_str(get(j, "spf.domain"), "mail.vendor.test", "spf domain from smtp.mailfrom");
    is_str(get(j, "spf.aligned"), "true", "spf aligned (relaxed: same organizational domain)");
    json_decref(j);

    /* the form milter-dkim writes (leading space, folded, comments) */
    j = auth(" " ID ";\n\tdkim=pass header.d=vendor.test header.s=s1 header.a=rsa-sha256 "
	     "header.b=AbCd/+Ef;\n\tspf=pass (192.0.2.1 is in the SPF record, (nested)) "
	     "smtp.mailfrom=billing@vendor.test;\n\tdmarc=pass (p=reject, dkim and spf "
	     "aligned) header.from=vendor.test policy.dmarc=reject", "billing@vendor.test");
    is_str(get(j, "dmarc"), "pass", "milter-dkim's form: dmarc");
    is_str(get(j, "spf.aligned"), "true", "milter-dkim's form: spf aligned");
    is_str(get(j, "dkim.0.aligned"), "true", "milter-dkim's form: dkim aligned");
    json_decref(j);
    j = auth(" " ID ";\n\tdkim=none (no signatures found);\n\tspf=none smtp.helo=mx.x.test;"
	     "\n\tdmarc=permerror (2 From: headers)", "billing@vendor.test");
    is_str(get(j, "dmarc"), "none", "a dmarc result without header.from is no verdict here");
    is_str(get(j, "dkim.0.result"), "none", "dkim=none is listed as it is");
    is_str(get(j, "dkim.0.domain"), "null", "with no domain");
    json_decref(j);

    j = auth(NULL, "billing@vendor.test");
    is_str(get(j, "dmarc"), "none", "no trusted header: dmarc none");
    is_str(get(j, "spf.result"), "none", "no trusted header: spf none");
    is_str(get(j, "dkim"), "[array]", "no trusted header: dkim []");
    is_str(get(j, "dkim.0"), "(absent)", "no trusted header: dkim empty");
    is_str(get(j, "spf.domain"), "null", "spf domain null");
    json_decref(j);

    j = auth(ID "; dkim=pass header.d=evil.test; spf=pass smtp.mailfrom=evil.test; "
	     "dmarc=pass header.from=evil.test", "billing@vendor.test");
    is_str(get(j, "dmarc"), "none", "a dmarc verdict about another From domain is none");
    is_str(get(j, "dkim.0.aligned"), "false", "dkim of another domain: not aligned");
    is_str(get(j, "spf.aligned"), "false", "spf of another domain: not aligned");
    json_decref(j);

    j = auth(ID "; dkim=fail header.d=vendor.test; spf=softfail smtp.mailfrom=vendor.test; "
	     "dmarc=fail header.from=vendor.test", "billing@vendor.test");
    is_str(get(j, "dmarc"), "fail", "dmarc fail");
    is_str(get(j, "dkim.0.aligned"), "false", "a failed signature is never aligned");
    is_str(get(j, "spf.aligned"), "false", "a softfail is never aligned");
    json_decref(j);

    /* RFC 6532: the milter's A-R names the A-labels of a U-label From:
       domain, and the plugin reads the From: with the same reader */
    j = auth(ID "; dkim=pass header.d=xn--bcher-kva.example; "
	     "dmarc=pass header.from=xn--bcher-kva.example",
	     " Buchhandlung <j\xc3\xb6rg@b\xc3\xbc" "cher.example>");
    is_str(get(j, "from_domain"), "xn--bcher-kva.example", "a U-label From: domain: A-labels");
    is_str(get(j, "dmarc"), "pass", "and the milter's dmarc=pass for it stands");
    is_str(get(j, "dkim.0.aligned"), "true", "its signature aligned");
    json_decref(j);

    j = auth(ID "; dmarc=pass header.from=vendor.test", "a@vendor.test, b@vendor.test");
    is_str(get(j, "from_domain"), "null", "two addresses in From: no from_domain");
    is_str(get(j, "dmarc"), "none", "and no dmarc");
    json_decref(j);
    {
	char   *text = authres_authentication(ID "; dmarc=pass header.from=vendor.test",
					      "a@vendor.test", 2, ID, NULL);

	ok(strstr(text, "\"from_domain\":null") && strstr(text, "\"dmarc\":\"none\""),
	   "two From: headers: no from_domain, no dmarc");
	free(text);
    }
    j = auth(ID "; dkim=pass header.i=@sub.vendor.test; spf=pass smtp.helo=mx.vendor.test",
	     "x@vendor.test");
    is_str(get(j, "dkim.0.domain"), "sub.vendor.test", "dkim domain from header.i");
    is_str(get(j, "spf.domain"), "mx.vendor.test", "spf domain from smtp.helo");
    json_decref(j);
    j = auth(ID "; dkim=pass header.d=vendor.test; dkim=pass header.d=esp.test",
	     "x@vendor.test");
    is_str(get(j, "dkim.1.domain"), "esp.test", "every dkim result, in order");
    is_str(get(j, "dkim.1.aligned"), "false", "the ESP's signature is not aligned");
    json_decref(j);
    j = auth(ID "; dkim=pass header.d=vendor.test garbage", "x@vendor.test");
    is_str(get(j, "dkim.0"), "(absent)", "an unreadable trusted header counts for nothing");
    is_str(get(j, "from_domain"), "vendor.test", "but from_domain stays");
    json_decref(j);
}

static void alignment(void)
{
    ok(authres_aligned("vendor.test", "VENDOR.test."), "same domain, case, trailing dot");
    ok(authres_aligned("mail.vendor.co.uk", "vendor.co.uk"), "relaxed under co.uk");
    ok(!authres_aligned("evil.co.uk", "vendor.co.uk"), "a public suffix is no organization");
    ok(!authres_aligned("a.github.io", "b.github.io"), "private suffixes count too");
    ok(!authres_aligned(NULL, "vendor.test"), "no domain: not aligned");
    ok(!authres_aligned("", ""), "empty: not aligned");
}

#define SIG_TAGS "v=1; a=rsa-sha256; d=vendor.test; s=s1; bh=AAAA; "
#define SIG_B	"b=abcd efgh\r\n\tijkl/+=="

/* content - "content_signed" with one signature and the message's headers */

static const char *content(const char *sig, const char *ar, const char *const *headers,
			           char *out, size_t size)
{
    struct dkimsig_msg m = {0};
    char   *text;
    json_t *j;

    dkimsig_header(&m, "DKIM-Signature", sig, strlen(sig));
    for (; headers && *headers; headers++)
	dkimsig_header(&m, *headers, "x", 1);
    text = authres_authentication(ar, "x@vendor.test", 1, ID, &m);
    j = json_loads(text, 0, NULL);
    snprintf(out, size, "%s/%s", get(j, "content_signed"), get(j, "dkim.0.covers_content"));
    json_decref(j);
    free(text);
    dkimsig_free(&m);
    return (out);
}

static void coverage(void)
{
    static const char *const ct[] = {"Content-Type", NULL};
    static const char *const ct2[] = {"Content-Type", "content-type", NULL};
    static const char *const mime[] = {"MIME-Version", "Content-Type",
    "Content-Transfer-Encoding", "Content-Disposition", NULL};
    const char *pass = ID "; dkim=pass header.d=vendor.test header.b=abcdefgh";
    char    buf[64];

    is_str(content(SIG_TAGS "h=from:to:subject; " SIG_B, pass, NULL, buf, sizeof(buf)),
	   "true/true", "no MIME headers, none signed: covered");
    is_str(content(SIG_TAGS "h=from:to:subject; " SIG_B, pass, ct, buf, sizeof(buf)),
	   "false/false", "an unsigned Content-Type: not covered");
    is_str(content(SIG_TAGS "h=from : Content-TYPE\r\n :to; " SIG_B, pass, ct, buf,
		   sizeof(buf)), "true/true", "h= with FWS and case names it");
    is_str(content(SIG_TAGS "h=from:content-type; " SIG_B, pass, ct2, buf, sizeof(buf)),
	   "false/false", "two Content-Types, one signed: not covered");
    is_str(content(SIG_TAGS "h=from:content-type:content-type; " SIG_B, pass, ct2, buf,
		   sizeof(buf)), "true/true", "both signed: covered");
    is_str(content(SIG_TAGS "h=from:content-type:mime-version:content-transfer-encoding; "
		   SIG_B, pass, mime, buf, sizeof(buf)), "false/false",
	   "an unsigned Content-Disposition: not covered");
    is_str(content(SIG_TAGS "h=from:content-type:mime-version:content-transfer-encoding:"
		   "content-disposition; " SIG_B, pass, mime, buf, sizeof(buf)), "true/true",
	   "all four signed: covered");
    is_str(content(SIG_TAGS "l=10; h=from:content-type; " SIG_B, pass, ct, buf, sizeof(buf)),
	   "false/false", "l=: never covered");
    is_str(content(SIG_TAGS "h=from::content-type; " SIG_B, pass, ct, buf, sizeof(buf)),
	   "false/false", "an empty name in h=: unreadable");
    is_str(content(SIG_TAGS "h=from:content-type; h=from; " SIG_B, pass, ct, buf, sizeof(buf)),
	   "false/false", "h= twice: the tag-list is refused");
    is_str(content(SIG_TAGS "h=from:content-type; " SIG_B,
		   ID "; dkim=pass header.d=vendor.test header.b=abcdefgX", ct, buf, sizeof(buf)),
	   "false/false", "header.b matches no signature");
    is_str(content(SIG_TAGS "h=from:content-type; " SIG_B,
		   ID "; dkim=fail header.d=vendor.test header.b=abcdefgh", ct, buf, sizeof(buf)),
	   "false/false", "a failed signature covers nothing");
    is_str(content(SIG_TAGS "h=from:content-type; " SIG_B,
		   ID "; dkim=pass header.d=other.test header.b=abcdefgh", ct, buf, sizeof(buf)),
	   "false/false", "d= is not header.d");
    is_str(content("v=1; a=rsa-sha256; d=esp.test; s=s1; bh=AAAA; h=from:content-type; " SIG_B,
		   ID "; dkim=pass header.d=esp.test header.b=abcdefgh", ct, buf, sizeof(buf)),
	   "false/true", "an unaligned signature covers, but content_signed is false");
    {
	static const char *const to[] = {"To", NULL};
	static const char *const tocc[] = {"To", "Cc", NULL};

	is_str(content(SIG_TAGS "h=from:subject; " SIG_B, pass, to, buf, sizeof(buf)),
	       "false/false", "an unsigned To: not covered (added to another's bill)");
	is_str(content(SIG_TAGS "h=from:to; " SIG_B, pass, tocc, buf, sizeof(buf)),
	       "false/false", "an unsigned Cc: not covered");
	is_str(content(SIG_TAGS "h=from:TO:cc; " SIG_B, pass, tocc, buf, sizeof(buf)),
	       "true/true", "To and Cc signed: covered");
    }
    ok(dkimsig_b_begins(SIG_TAGS "h=from; " SIG_B, "abcdefghijkl/+=="), "all of b=");
    ok(!dkimsig_b_begins(SIG_TAGS "h=from; " SIG_B, "abcdefghijkl/+==A"), "longer than b=");
    ok(!dkimsig_b_begins(SIG_TAGS "h=from; " SIG_B, ""), "an empty header.b matches none");
    {
	struct dkimsig_msg m = {0};
	const char *good = SIG_TAGS "h=from:content-type; " SIG_B;
	const char *copy = SIG_TAGS "h=from; " SIG_B "X";

	dkimsig_header(&m, "Content-Type", "x", 1);
	dkimsig_header(&m, "DKIM-Signature", good, strlen(good));
	ok(dkimsig_content(&m, "vendor.test", "abcdefgh"), "one matching signature covers");
	dkimsig_header(&m, "DKIM-Signature", copy, strlen(copy));
	ok(!dkimsig_content(&m, "vendor.test", "abcdefgh"),
	   "a copy sharing the prefix that does not cover: not covered");
	dkimsig_free(&m);
    }
}

int     main(void)
{
    coverage();
    trusted();
    parse();
    authentication();
    alignment();
    return (tap_done());
}
