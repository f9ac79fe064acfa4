/* dnskey_test - unit tests for milter-dkim/dnskey.c: DKIM key records (RFC 6376 3.6.1,
 * RFC 8463) judged against key files, every verdict and every tag rule. */

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
