/* canon_test - unit tests for milter-dkim/canon.c and dkim_sign.c */

#include "build_config.h"

#include <stdlib.h>
#include <string.h>

#include "canon.h"
#include "dkim_sign.h"
#include "keys.h"
#include "message.h"
#include "tap.h"
#include "xalloc.h"

struct text {
    char   *data;
    size_t  len;
};

static void text_sink(void *context, const unsigned char *data, size_t len)
{
    struct text *t = context;

    t->data = xrealloc(t->data, t->len + len + 1);
    memcpy(t->data + t->len, data, len);
    t->len += len;
    t->data[t->len] = 0;
}

/* body - canonical text of a body fed in chunks of "step" octets (0: one chunk) */

static char *body(const char *in, size_t len, int relaxed, size_t step)
{
    struct canon_body b;
    struct text t = {xstrdup(""), 0};

    canon_body_init(&b, relaxed, text_sink, &t);
    for (size_t off = 0; off < len;) {
	size_t  n = step && step < len - off ? step : len - off;

	canon_body_update(&b, (const unsigned char *) in + off, n);
	off += n;
    }
    canon_body_final(&b);
    return (t.data);
}

static int body_is(const char *in, int relaxed, const char *want, const char *what)
{
    size_t  len = strlen(in);
    int     same = 1;
    char   *got = body(in, len, relaxed, 0);

    is_str(got, want, "%s (%s, one chunk)", what, relaxed ? "relaxed" : "simple");
    free(got);
    for (size_t step = 1; step <= len; step++) {	/* every chunk size */
	got = body(in, len, relaxed, step);
	same &= strcmp(got, want) == 0;
	free(got);
    }
    return (ok(same, "%s (%s, every chunk size)", what, relaxed ? "relaxed" : "simple"));
}

static void header_is(const char *name, const char *value, int relaxed, const char *want,
		              const char *what)
{
    size_t  len;
    char   *got = canon_header(name, value, relaxed, &len);

    is_str(got, want, "%s", what);
    is_int((long long) len, (long long) strlen(want), "%s: length", what);
    free(got);
}

static char *body_hash(const char *in, int relaxed)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    struct canon_body b;
    unsigned char digest[32];
    unsigned len;
    char   *out = xmalloc(48);

    EVP_DigestInit_ex(md, canon_sha256(), NULL);
    canon_body_init(&b, relaxed, canon_digest_sink, md);
    canon_body_update(&b, (const unsigned char *) in, strlen(in));
    canon_body_final(&b);
    EVP_DigestFinal_ex(md, digest, &len);
    EVP_MD_CTX_free(md);
    EVP_EncodeBlock((unsigned char *) out, digest, (int) len);
    return (out);
}

static void rfc_examples(void)
{
    /* RFC 6376 3.4.5, header "A: X" and "B : Y<HTAB><CRLF><HTAB>Z<SP><SP>" */
    header_is("A", " X", 1, "a:X\r\n", "RFC 6376 3.4.5: relaxed header A");
    header_is("B ", " Y\t\r\n\tZ  ", 1, "b:Y Z\r\n", "RFC 6376 3.4.5: relaxed header B");
    header_is("A", " X", 0, "A: X\r\n", "RFC 6376 3.4.5: simple header A");
    header_is("B ", " Y\t\r\n\tZ  ", 0, "B : Y\t\r\n\tZ  \r\n",
	      "RFC 6376 3.4.5: simple header B unchanged");
    header_is("B ", " Y\t\n\tZ  ", 0, "B : Y\t\r\n\tZ  \r\n",
	      "simple: a fold with bare LF (as Postfix hands it) is written CRLF");
    header_is("B ", " Y\t\n\tZ  ", 1, "b:Y Z\r\n", "relaxed: unfolds a bare-LF fold");
    header_is("Subject", " a: b", 1, "subject:a: b\r\n", "relaxed: a colon in the value");
    header_is("Subject", "", 1, "subject:\r\n", "relaxed: empty value");
    header_is("X", " \t \r\n ", 1, "x:\r\n", "relaxed: white space only");
    header_is("X", " a\rb", 1, "x:a\rb\r\n", "relaxed: a bare CR is kept");
    header_is("X", " caf\xc3\xa9  \xff", 1, "x:caf\xc3\xa9 \xff\r\n", "relaxed: 8-bit kept");

    /* RFC 6376 3.4.5 body */
    body_is(" C \r\nD \t E\r\n\r\n\r\n", 1, " C\r\nD E\r\n", "RFC 6376 3.4.5 body");
    body_is(" C \r\nD \t E\r\n\r\n\r\n", 0, " C \r\nD \t E\r\n", "RFC 6376 3.4.5 body");
    body_is("", 0, "\r\n", "empty body is CRLF");
    body_is("", 1, "", "empty body is empty");
    body_is("\r\n\r\n\r\n", 0, "\r\n", "only empty lines");
    body_is("\r\n\r\n\r\n", 1, "", "only empty lines");
    body_is(" \t \r\n \r\n", 1, "", "only white space lines");
    body_is(" \t \r\n \r\n", 0, " \t \r\n \r\n", "white space lines are content");
    body_is("abc", 0, "abc\r\n", "no final CRLF: one added");
    body_is("abc  ", 1, "abc\r\n", "no final CRLF, trailing WSP");
    body_is("a\r\n\r\nb", 1, "a\r\n\r\nb\r\n", "empty line inside kept");
    body_is("a\rb\nc\r\n", 0, "a\rb\nc\r\n", "bare CR and LF are octets");
    body_is("a \rb\r\n", 1, "a \rb\r\n", "WSP before a bare CR stays");
    body_is("abc\r", 1, "abc\r\r\n", "a CR at the very end is content");
    body_is("abc\r\r\n", 1, "abc\r\r\n", "CR CR LF: one CR of content");
    body_is("\xff\xfe  \xc3\xa9\t\r\n", 1, "\xff\xfe \xc3\xa9\r\n", "8-bit");
    body_is("a\r\n \r\n\t\r\nb\r\n", 1, "a\r\n\r\n\r\nb\r\n", "WSP lines inside are empty");
}

static void hashes(void)
{
    char   *h;

    /* the well-known body hashes of an empty body (RFC 6376 erratum 3192) */
    h = body_hash("", 0);
    is_str(h, "frcCV1k9oG9oKj3dpUqdJg1PxRT2RSN/XKdLCPjaYaY=", "bh of empty body, simple");
    free(h);
    h = body_hash("", 1);
    is_str(h, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", "bh of empty body, relaxed");
    free(h);
    h = body_hash("Hi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\nJoe.\r\n", 1);
    is_str(h, "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=", "RFC 8463 appendix A: bh=");
    free(h);
    h = body_hash("\r\n", 1);
    is_str(h, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", "bh of one empty line, relaxed");
    free(h);
}

static void add(struct message *m, const char *name, const char *value)
{
    ok(message_add_header(m, name, value, "mx.test") == NULL, "header %s added", name);
}

static void signing(void)
{
    struct message m = {0};
    struct dkim_sign s;
    struct dkim_key rsa, ed;
    char   *sign[] = {"From", "To", "Subject", NULL};
    char   *over[] = {"From", "Subject", "from", NULL};
    const char *err = NULL;
    char   *value, *line, *b, *want, longname[401];
    int     longest = 0, len = 0;

    add(&m, "Received", " x");
    add(&m, "To", " a@example.net");
    add(&m, "From", " b@example.com");
    add(&m, "To", " c@example.net");
    add(&m, "X-Other", " y");
    dkim_sign_start(&s, &m, sign, over, 1, 1);
    is_str(s.names, "to:from:to:from:subject", "h=: signed headers top down, then oversigned "
	   "names once each");
    is_str((char *) s.headers, "to:c@example.net\r\nfrom:b@example.com\r\nto:a@example.net\r\n",
	   "hashed: the instances of a name bottom up (To c before To a), as verifiers take them");
    dkim_sign_body(&s, (const unsigned char *) "hi \r\n\r\n", 7);
    dkim_sign_end_body(&s);
    is_str(s.bh, "RHI91NDg1Go8f6isolS2HCe2tXiflhd+gsgHAECfFTU=", "bh= of \"hi\\r\\n\"");
    ok(keys_generate(KEY_RSA, 1024, &rsa) == NULL, "RSA key");
    value = dkim_sign_header(&s, &rsa, "example.com", "sel", 1700000000, 3600, &err);
    ok(value != NULL && err == NULL, "signed with RSA");
    ok(value && strncmp(value, " v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=sel;",
			60) == 0, "tags v a c d s first");
    ok(value && strstr(value, "t=1700000000; x=1700003600;") != NULL, "t= and x= (TTL)");
    b = value ? strstr(value, "\n\tb=") : NULL;
    ok(b && strchr(b + 4, ';') == NULL, "b= last");
    for (line = value, len = 15; line && *line; line++, len++) {	/* "DKIM-Signature:" */
	if (*line == '\n')
	    len = -1;
	longest = len + 1 > longest ? len + 1 : longest;
    }
    ok(longest <= 78, "folded at 78 characters (longest line %d)", longest);
    free(value);
    ok(keys_generate(KEY_ED25519, 0, &ed) == NULL, "Ed25519 key");
    value = dkim_sign_header(&s, &ed, "example.com", "ed", 1700000000, 0, &err);
    ok(value && strstr(value, "a=ed25519-sha256;") && !strstr(value, "x="), "Ed25519, no x=");
    ok(value && strlen(strstr(value, "b=")) > 86, "an Ed25519 signature is 64 octets");
    free(value);
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = 0;
    value = dkim_sign_header(&s, &ed, longname, "sel", 1700000000, 0, &err);
    want = xasprintf("d=%s;", longname);
    ok(value && strstr(value, want) != NULL, "a 400-octet d= is written whole, not cut");
    free(want);
    free(value);
    keys_free(&rsa);
    keys_free(&ed);
    dkim_sign_free(&s);
    message_reset(&m);
}

/*
 * templates - each key carries a signing context set up at load, and a
 * signature made from a copy of it is the same bytes as one made from a
 * fresh context (RSA PKCS#1 v1.5 and Ed25519 are deterministic), for
 * every signature of a run: the template is only read.
 */
static void templates(void)
{
    struct message m = {0};
    struct dkim_sign s;
    struct dkim_key key[2];
    char   *sign[] = {"From", "Subject", NULL};
    const char *err = NULL;

    add(&m, "From", " b@example.com");
    add(&m, "Subject", " templates");
    dkim_sign_start(&s, &m, sign, NULL, 1, 0);
    dkim_sign_body(&s, (const unsigned char *) "body\r\n", 6);
    dkim_sign_end_body(&s);
    ok(keys_generate(KEY_RSA, 1024, &key[0]) == NULL, "RSA key");
    ok(keys_generate(KEY_ED25519, 0, &key[1]) == NULL, "Ed25519 key");
    ok(key[0].rsa_sign != NULL && key[0].ed_sign == NULL, "RSA: a sign context made at load");
    ok(key[1].ed_sign != NULL && key[1].rsa_sign == NULL, "Ed25519: a DigestSign context "
       "made at load");
    for (int k = 0; k < 2; k++) {
	char   *first = dkim_sign_header(&s, &key[k], "example.com", "s", 1700000000, 0, &err);
	char   *again = dkim_sign_header(&s, &key[k], "example.com", "s", 1700000000, 0, &err);
	EVP_PKEY_CTX *rsa = key[k].rsa_sign;
	EVP_MD_CTX *ed = key[k].ed_sign;
	char   *fresh;

	key[k].rsa_sign = NULL;			/* the path without a template */
	key[k].ed_sign = NULL;
	fresh = dkim_sign_header(&s, &key[k], "example.com", "s", 1700000000, 0, &err);
	key[k].rsa_sign = rsa;
	key[k].ed_sign = ed;
	ok(first && again && fresh && strcmp(first, again) == 0 && strcmp(first, fresh) == 0,
	   "%s: the same signature from the template, twice, and from a fresh context",
	   k ? "Ed25519" : "RSA");
	free(first);
	free(again);
	free(fresh);
	keys_free(&key[k]);
    }
    dkim_sign_free(&s);
    message_reset(&m);
}

int     main(void)
{
    rfc_examples();
    hashes();
    signing();
    templates();
    return (tap_done());
}
