/* dnskey_test - unit tests for milter-dkim/dnskey.c: DKIM key records (RFC 6376 3.6.1,
 * RFC 8463) judged against key files, every verdict and every tag rule; and
 * judged alone for a verifier (dnskey_verifiable(): invalid, too small,
 * re-encoded). */

#include "build_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "dnskey.h"
#include "tap.h"
#include "xalloc.h"

static char dir[] = "/tmp/dnskey_test.XXXXXX";

/* key_file - write pkey as PEM (PKCS#8 or traditional); return the path */

static char *key_file(EVP_PKEY *pkey, const char *name, int traditional)
{
    char   *path = xasprintf("%s/%s", dir, name);
    FILE   *fp = fopen(path, "w");

    if (traditional)
	PEM_write_PrivateKey_ex(fp, pkey, NULL, NULL, 0, NULL, NULL, NULL, "PEM");
    if (!traditional || ftell(fp) == 0)
	PEM_write_PKCS8PrivateKey(fp, pkey, NULL, NULL, 0, NULL, NULL);
    fclose(fp);
    return (path);
}

static char *b64(const unsigned char *data, int len)
{
    char   *out = xmalloc(4 * ((len + 2) / 3) + 1);

    EVP_EncodeBlock((unsigned char *) out, data, len);
    return (out);
}

static char *rsa_p(EVP_PKEY *pkey, int pkcs1)
{
    unsigned char *der = NULL;
    int     len = pkcs1 ? i2d_PublicKey(pkey, &der) : i2d_PUBKEY(pkey, &der);
    char   *out = b64(der, len);

    OPENSSL_free(der);
    return (out);
}

static char *ed_p(EVP_PKEY *pkey)
{
    unsigned char raw[32];
    size_t  len = sizeof(raw);

    EVP_PKEY_get_raw_public_key(pkey, raw, &len);
    return (b64(raw, (int) len));
}

static int judge(const char *record, const struct dnskey *key, char *why)
{
    return (dnskey_record(record, strlen(record), key, why, 256));
}

#define JUDGE(rec, key, want, name) do { \
	char    why_[256]; \
	int     got_ = judge((rec), (key), why_); \
	if (!is_int(got_, (want), "%s", (name))) \
	    diag("record %.120s: %s", (rec), why_); \
    } while (0)

static int verifiable(const char *record, int *bits, char **out, char *why);

static void records(const struct dnskey *rsa, const char *p, const char *p1,
		            const char *p_other, const struct dnskey *ed, const char *ep)
{
    char   *r;
    char    why[256];

    r = xasprintf("v=DKIM1; k=rsa; p=%s", p);
    JUDGE(r, rsa, DNSKEY_OK, "published and matching (RSA, SubjectPublicKeyInfo)");
    JUDGE(r, ed, DNSKEY_MISMATCH, "an RSA record for an Ed25519 key: different key");
    ok(judge(r, ed, why) == DNSKEY_MISMATCH && strstr(why, "k=rsa") && strstr(why, "ed25519"),
       "the reason names both types: %s", why);
    free(r);
    r = xasprintf("p=%s", p);
    JUDGE(r, rsa, DNSKEY_OK, "v= and k= are optional (k= defaults to rsa)");
    free(r);
    r = xasprintf("v=DKIM1; k=rsa; p=%.40s \t\r\n %s;", p, p + 40);
    JUDGE(r, rsa, DNSKEY_OK, "FWS inside p= and a trailing ';' are allowed");
    free(r);
    r = xasprintf("v=DKIM1; p=%s", p1);
    JUDGE(r, rsa, DNSKEY_OK, "a bare RSAPublicKey (PKCS#1) in p= is the same key");
    free(r);
    r = xasprintf("v=DKIM1; k=rsa; p=%s", p_other);
    JUDGE(r, rsa, DNSKEY_MISMATCH, "another RSA key: different key");
    free(r);
    JUDGE("v=DKIM1; k=rsa; p=", rsa, DNSKEY_REVOKED, "p= empty: revoked");
    JUDGE("v=DKIM1; k=rsa; p= ", rsa, DNSKEY_REVOKED, "p= of only FWS: revoked");
    JUDGE("v=DKIM1; k=rsa; p=MIIB!!!!", rsa, DNSKEY_INVALID, "bad base64: syntax error");
    JUDGE("v=DKIM1; k=rsa; p=QUJD", rsa, DNSKEY_INVALID, "base64 of no key: syntax error");
    JUDGE("v=DKIM1; k=rsa; p=QUJ", rsa, DNSKEY_INVALID, "truncated base64: syntax error");
    JUDGE("v=DKIM1; k=rsa; p=QQ===", rsa, DNSKEY_INVALID, "three '=': syntax error");
    JUDGE("v=DKIM1; k=rsa", rsa, DNSKEY_INVALID, "no p=: syntax error");
    r = xasprintf("v=DKIM1; k=rsa; P=%s", p);
    JUDGE(r, rsa, DNSKEY_INVALID, "tag names are case-sensitive: P= is not p=");
    free(r);
    r = xasprintf("v=DKIM1; k=rsa; p=%s; p=%s", p, p);
    JUDGE(r, rsa, DNSKEY_INVALID, "a duplicate tag invalidates the record");
    free(r);
    r = xasprintf("k=rsa; v=DKIM1; p=%s", p);
    JUDGE(r, rsa, DNSKEY_INVALID, "v= not first: syntax error");
    free(r);
    r = xasprintf("v=DKIM2; p=%s", p);
    JUDGE(r, rsa, DNSKEY_INVALID, "v=DKIM2: syntax error");
    free(r);
    r = xasprintf("v=DKIM1;; p=%s", p);
    JUDGE(r, rsa, DNSKEY_INVALID, "an empty tag between two ';' (dkimpy refuses it)");
    free(r);
    r = xasprintf("v=DKIM1; k=dsa; p=%s", p);
    JUDGE(r, rsa, DNSKEY_INVALID, "unknown k=: syntax error");
    free(r);
    r = xasprintf("v=DKIM1; h=sha1; p=%s", p);
    JUDGE(r, rsa, DNSKEY_INVALID, "h=sha1 only: every rsa-sha256 signature fails");
    free(r);
    r = xasprintf("v=DKIM1; h=sha1 : SHA256; p=%s", p);
    JUDGE(r, rsa, DNSKEY_OK, "h=sha1:sha256 (FWS, any case) allows sha256");
    free(r);
    r = xasprintf("v=DKIM1; s=email; t=s; p=%s", p);
    ok(judge(r, rsa, why) == DNSKEY_OK && strstr(why, "t=s"), "t=s: usable, noted: %s", why);
    free(r);
    r = xasprintf("v=DKIM1; t=y:s; p=%s", p);
    ok(judge(r, rsa, why) == DNSKEY_OK && strstr(why, "t=y"), "t=y: usable, noted: %s", why);
    free(r);
    r = xasprintf("v=DKIM1; s=dns; p=%s", p);
    JUDGE(r, rsa, DNSKEY_INVALID, "s= without email or '*': unusable for mail");
    free(r);
    /* helper-99: records of ours in the exact spelling dkimpy compares */
    {
	static const char *const odd[] = {"k=RSA", "k=Rsa", "s=EMAIL", "s=email:*", "s=*:email"};
	int     bits;
	char   *out;

	for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
	    r = xasprintf("v=DKIM1; %s; p=%s", odd[i], p);
	    ok(judge(r, rsa, why) == DNSKEY_INVALID && strstr(why, "dkimpy"),
	       "ours: %s refused (%s)", odd[i], why);
	    ok(verifiable(r, &bits, &out, why) == DNSKEY_OK,
	       "a sender's: %s read as RFC 5234 does", odd[i]);
	    free(r);
	}
    }
    r = xasprintf("v=DKIM1; k=rsa; s=*; p=%s", p);
    JUDGE(r, rsa, DNSKEY_OK, "ours: s=* is fine");
    free(r);
    r = xasprintf("v=DKIM1; n=a note; p=%s; x_future=1", p);
    JUDGE(r, rsa, DNSKEY_OK, "n= and unknown tags are ignored");
    free(r);
    r = xasprintf("v=DKIM1; p=%s\001", p);
    JUDGE(r, rsa, DNSKEY_INVALID, "a control character: syntax error");
    free(r);
    ok(dnskey_record("p=\0AAA", 6, rsa, why, sizeof(why)) == DNSKEY_INVALID,
       "a NUL byte in the record: syntax error");

    r = xasprintf("v=DKIM1; k=ed25519; p=%s", ep);
    JUDGE(r, ed, DNSKEY_OK, "published and matching (Ed25519, RFC 8463)");
    JUDGE(r, rsa, DNSKEY_MISMATCH, "an Ed25519 record for an RSA key: different key");
    free(r);
    r = xasprintf("v=DKIM1; p=%s", ep);
    JUDGE(r, ed, DNSKEY_INVALID, "an Ed25519 key without k=ed25519 (read as RSA): error");
    free(r);
    JUDGE("v=DKIM1; k=ed25519; p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==", ed,
	  DNSKEY_INVALID, "31 bytes is no Ed25519 key");
    JUDGE("v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", ed,
	  DNSKEY_MISMATCH, "another Ed25519 key (RFC 8463's): different key");
}

static void multi(const struct dnskey *rsa, const char *p, const char *p_other)
{
    char   *good = xasprintf("v=DKIM1; p=%s", p), *bad = xasprintf("v=DKIM1; p=%s", p_other);
    const char *texts[3] = {good, good, bad};
    size_t  lens[3] = {strlen(good), strlen(good), strlen(bad)};
    char    why[256];

    is_int(dnskey_records(0, texts, lens, rsa, why, sizeof(why)), DNSKEY_MISSING,
	   "no record: missing");
    is_int(dnskey_records(2, texts, lens, rsa, why, sizeof(why)), DNSKEY_OK,
	   "two identical records: matching");
    ok(dnskey_records(3, texts, lens, rsa, why, sizeof(why)) == DNSKEY_MISMATCH
       && strstr(why, "record 3") != NULL,
       "a third record with another key: different key, and which: %s", why);
    texts[0] = "v=spf1 -all";
    lens[0] = strlen(texts[0]);
    is_int(dnskey_records(2, texts, lens, rsa, why, sizeof(why)), DNSKEY_INVALID,
	   "another kind of TXT record beside the key: a verifier may pick it");
    free(good);
    free(bad);
}

/* verifiable - dnskey_verifiable() of record; why and the re-encoded record kept */

static int verifiable(const char *record, int *bits, char **out, char *why)
{
    return (dnskey_verifiable(record, strlen(record), bits, out, why, 256));
}

#define VERIFIABLE(rec, want, name) do { \
	char    why_[256], *out_ = NULL; \
	int     bits_, got_ = verifiable((rec), &bits_, &out_, why_); \
	if (!is_int(got_, (want), "%s", (name))) \
	    diag("record %.120s: %s", (rec), why_); \
	free(out_); \
    } while (0)

/* lone_invalid - records no verifier may use, each with its reason */

static void lone_invalid(const char *p, const char *p_other)
{
    static const struct {
	const char *head;			/* then p= */
	int     twice;			/* 1: "; p=" the key again; 2: another key first */
	const char *why;
	const char *name;
    }       cases[] = {
	{"v=DKIM1; k=rsa; p=", 1, "a duplicate tag (RFC 6376 3.2)", "p= twice, same key"},
	{"v=DKIM1; k=rsa; p=", 2, "a duplicate tag (RFC 6376 3.2)",
	"p= twice, the last the right key"},
	{"v=DKIM1; k=ed25519; k=rsa; p=", 0, "a duplicate tag (RFC 6376 3.2)", "k= twice"},
	{"v=DKIM1; v=DKIM1; p=", 0, "a duplicate tag (RFC 6376 3.2)", "v= twice"},
	{"v=DKIM1; h=sha1; h=sha256; p=", 0, "a duplicate tag (RFC 6376 3.2)", "h= twice"},
	{"v=DKIM1; t=s; t=y; p=", 0, "a duplicate tag (RFC 6376 3.2)", "t= twice"},
	{"v=DKIM1; 1x=y; p=", 0, "a malformed tag name", "a tag name with a digit first"},
	{"k=rsa; v=DKIM1; p=", 0, "v= must come first and be DKIM1 (RFC 6376 3.6.1)",
	"v= not first"},
	{"v=DKIM2; p=", 0, "v= must come first and be DKIM1 (RFC 6376 3.6.1)", "v=DKIM2"},
	{"v=DKIM1; k=x)(\\\"y; p=", 0, "unknown key type k=x????y",
	"a k= with parentheses: quoted harmlessly"},
	{"v=DKIM1; h=sha1; p=", 0, "h=sha1 does not allow sha256", "h=sha1 only"},
	{"v=DKIM1; s=dns; p=", 0, "s=dns excludes email", "s= without email"},
    };
    char    why[256], *out, *r;
    int     bits;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
	r = xasprintf("%s%s%s%s", cases[i].head, cases[i].twice == 2 ? p_other : p,
		      cases[i].twice ? "; p=" : "", cases[i].twice ? p : "");
	out = (char *) "unset";
	ok(verifiable(r, &bits, &out, why) == DNSKEY_INVALID && out == NULL
	   && strcmp(why, cases[i].why) == 0, "alone: %s: invalid (%s)", cases[i].name, why);
	free(r);
    }
    /* helper-98: "rsa" is an ABNF quoted literal, case-insensitive */
    r = xasprintf("v=DKIM1; k=RSA; p=%s", p);
    ok(verifiable(r, &bits, &out, why) == DNSKEY_OK && bits >= 1024,
       "alone: k=RSA is k=rsa (RFC 5234 2.3: quoted strings are case-insensitive)");
    free(r);
    VERIFIABLE("v=DKIM1; k=rsa; p=", DNSKEY_REVOKED, "alone: p= empty: revoked");
    VERIFIABLE("v=DKIM1; k=rsa", DNSKEY_INVALID, "alone: no p=: invalid");
    ok(dnskey_verifiable("p=\0AAA", 6, &bits, &out, why, sizeof(why)) == DNSKEY_INVALID,
       "alone: a NUL byte: invalid");
}

/* lone_sizes - RFC 8301 3.2: RSA keys of 1024 bits and more, counted exactly */

static void lone_sizes(EVP_PKEY *rsa_key)
{
    static const int sizes[] = {512, 1017, 1023};
    char    why[256], want[80], *out, *p, *r;
    int     bits;
    EVP_PKEY *small;

    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
	for (int pkcs1 = 0; pkcs1 < 2; pkcs1++) {
	    small = EVP_RSA_gen(sizes[i]);
	    r = xasprintf("v=DKIM1; k=rsa; p=%s", p = rsa_p(small, pkcs1));
	    snprintf(want, sizeof(want), "RSA key of %d bits; RFC 8301 requires 1024", sizes[i]);
	    ok(verifiable(r, &bits, &out, why) == DNSKEY_TOOSMALL && bits == sizes[i]
	       && out == NULL && strcmp(why, want) == 0, "alone: %d-bit RSA%s: too small (%s)",
	       sizes[i], pkcs1 ? " (bare RSAPublicKey)" : "", why);
	    free(r), free(p);
	    EVP_PKEY_free(small);
	}
    }
    r = xasprintf("v=DKIM1; k=rsa; p=%s", p = rsa_p(rsa_key, 0));
    ok(verifiable(r, &bits, &out, why) == DNSKEY_OK && bits == 1024 && out == NULL,
       "alone: a 1024-bit RSA key (SubjectPublicKeyInfo): usable as it is");
    free(r), free(p);
}

/* lone_reencode - a bare RSAPublicKey: the same tags, p= as SubjectPublicKeyInfo */

static void lone_reencode(EVP_PKEY *rsa_key, const struct dnskey *rsa, const char *ep)
{
    char   *p = rsa_p(rsa_key, 0), *p1 = rsa_p(rsa_key, 1), *r, *want, *out;
    char    why[256];
    int     bits;

    r = xasprintf("v=DKIM1; k=rsa; n=a note;  t=y ; p=%.40s %s", p1, p1 + 40);
    want = xasprintf("v=DKIM1; k=rsa; n=a note; t=y; p=%s", p);
    ok(verifiable(r, &bits, &out, why) == DNSKEY_REENCODE && bits == 1024 && out != NULL
       && strcmp(out, want) == 0, "alone: a bare RSAPublicKey: re-encoded, tags kept");
    ok(out && dnskey_record(out, strlen(out), rsa, why, sizeof(why)) == DNSKEY_OK,
       "the re-encoded record holds the same key");
    free(r), free(want), free(out);
    r = xasprintf("v=DKIM1; k=ed25519; p=%s", ep);
    VERIFIABLE(r, DNSKEY_OK, "alone: an Ed25519 key: usable as it is");
    free(r);
    is_str(dnskey_status_text(DNSKEY_TOOSMALL), "key too small", "status name: too small");
    is_str(dnskey_status_text(DNSKEY_REENCODE), "usable once re-encoded",
	   "status name: re-encode");
    free(p), free(p1);
}

int     main(void)
{
    EVP_PKEY *rsa_key = EVP_RSA_gen(1024), *other = EVP_RSA_gen(1024);
    EVP_PKEY *ed_key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    struct dnskey rsa, rsa1, ed, seed;
    char   *p = rsa_p(rsa_key, 0), *p1 = rsa_p(rsa_key, 1), *po = rsa_p(other, 0);
    char   *ep = ed_p(ed_key), *path;
    FILE   *fp;

    if (mkdtemp(dir) == NULL)
	return (1);
    ok(dnskey_load(path = key_file(rsa_key, "rsa.pem", 0), &rsa) == NULL
       && rsa.type == DNSKEY_RSA, "PKCS#8 RSA key file loads");
    unlink(path), free(path);
    ok(dnskey_load(path = key_file(rsa_key, "rsa1.pem", 1), &rsa1) == NULL
       && rsa1.type == DNSKEY_RSA && EVP_PKEY_eq(rsa.pkey, rsa1.pkey) == 1,
       "traditional (PKCS#1) RSA key file: the same key");
    dnskey_free(&rsa1);
    unlink(path), free(path);
    ok(dnskey_load(path = key_file(ed_key, "ed.pem", 0), &ed) == NULL
       && ed.type == DNSKEY_ED25519, "Ed25519 PEM key file loads");
    unlink(path), free(path);
    path = xasprintf("%s/seed", dir);		/* RFC 8463 appendix A, as dkimpy writes it */
    fp = fopen(path, "w");
    fputs("nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=\n", fp);
    fclose(fp);
    ok(dnskey_load(path, &seed) == NULL && seed.type == DNSKEY_ED25519,
       "a dkimpy base64 Ed25519 seed loads");
    JUDGE("v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", &seed,
	  DNSKEY_OK, "RFC 8463's published key matches its seed");
    fp = fopen(path, "w");
    fputs("not a key\n", fp);
    fclose(fp);
    ok(dnskey_load(path, &rsa1) != NULL, "a file that is no key: error");
    unlink(path), free(path);
    ok(dnskey_load("/nonexistent/key", &rsa1) != NULL, "a missing file: error");
    records(&rsa, p, p1, po, &ed, ep);
    multi(&rsa, p, po);
    lone_invalid(p, po);
    lone_sizes(rsa_key);
    lone_reencode(rsa_key, &rsa, ep);
    is_str(dnskey_status_text(DNSKEY_TEMPERROR), "temporary DNS error", "status names");
    dnskey_free(&rsa);
    dnskey_free(&ed);
    dnskey_free(&seed);
    EVP_PKEY_free(rsa_key);
    EVP_PKEY_free(other);
    EVP_PKEY_free(ed_key);
    free(p), free(p1), free(po), free(ep);
    rmdir(dir);
    return (tap_done());
}
