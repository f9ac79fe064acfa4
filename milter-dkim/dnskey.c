/*
 * NAME
 *	dnskey 3
 * SUMMARY
 *	judge a DKIM key record (RFC 6376 3.6.1, RFC 8463): against a key
 *	file, or alone as a verifier reads it
 * SYNOPSIS
 *	#include "dnskey.h"
#include "keys.h"
 *
 *	const char *dnskey_load(path, &key)
 *	void	dnskey_free(&key)
 *	int	dnskey_record(text, len, &key, why, whylen)
 *	int	dnskey_records(count, texts, lens, &key, why, whylen)
 *	int	dnskey_verifiable(text, len, &bits, &record, why, whylen)
 *	const char *dnskey_status_text(status)
 * DESCRIPTION
 *	dnskey_load() reads a private key file with keys_load(), as the
 *	milter does (PEM, PKCS#1 or PKCS#8, RSA or Ed25519, or the base64
 *	Ed25519 seed dkimpy and Rspamd write), and keeps only its public
 *	half.
 *
 *	dnskey_record() judges one TXT record (its strings already
 *	concatenated) as a verifier would read it for a signature made
 *	with that key: DNSKEY_OK (usable and the same key; notes such as
 *	t=y go to why), DNSKEY_MISMATCH (another key, or k= names
 *	another type), DNSKEY_REVOKED (p= empty), DNSKEY_INVALID (the
 *	tag-list does not parse: a duplicate or malformed tag, v= not
 *	first or not DKIM1, no p=, bad base64, a key that does not
 *	decode, an unknown k=, h= without sha256, s= without email), and
 *	as a record we publish must be: k= written rsa or ed25519 and s=
 *	written email or * (dkimpy compares them byte for byte, where RFC
 *	5234 makes them case-insensitive: k=RSA, s=EMAIL and s=email:* are
 *	DNSKEY_INVALID here). Tag names are case-sensitive ("P=" is not
 *	"p="), as RFC 6376 3.2 says.
 *
 *	dnskey_records() judges every TXT record at the name: a verifier
 *	may use any of them (RFC 6376 6.1.2), so all must pass; none is
 *	DNSKEY_MISSING.
 *
 *	dnskey_verifiable() judges one record alone, as mdns(3) does
 *	for the key libopendkim is about to use (libopendkim read the
 *	last of two p= tags, passed a v= not first, and judged an RSA
 *	key's size in whole bytes): DNSKEY_OK (usable as it is; bits
 *	gets the key's exact size), DNSKEY_REVOKED, DNSKEY_INVALID (the
 *	same rules as dnskey_record(), but k= and s= read as RFC 5234
 *	does, case-insensitive, s= a list: a sender's record), DNSKEY_TOOSMALL (an RSA key of
 *	fewer than DNSKEY_RSA_MIN_BITS bits: RFC 8301 3.2), or
 *	DNSKEY_REENCODE: usable, but p= is a bare RSAPublicKey, which
 *	libopendkim cannot read; record gets the same tags with p= as
 *	SubjectPublicKeyInfo (malloc'ed, the caller frees it).
 * DIAGNOSTICS
 *	dnskey_load() returns NULL or a static error text; why gets a
 *	one-line reason without any key material but the type; a
 *	sender's tag value it quotes is cut to 32 bytes and holds no
 *	control character, parenthesis, quote or backslash (the reason
 *	goes into an Authentication-Results comment).
 */

#include "build_config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "dnskey.h"
#include "keys.h"
#include "xalloc.h"

static const char *dnskey_status_names[] = {
    "published and matching", "missing", "different key", "revoked",
    "syntax error", "temporary DNS error", "key too small", "usable once re-encoded",
};

const char *dnskey_status_text(int status)
{
    if (status < 0 || status > DNSKEY_REENCODE)
	return ("unknown");
    return (dnskey_status_names[status]);
}

/* dnskey_public - the public half alone, so no private key is kept */

static EVP_PKEY *dnskey_public(EVP_PKEY *priv)
{
    unsigned char *der = NULL;
    const unsigned char *p;
    EVP_PKEY *pub;
    int     len = i2d_PUBKEY(priv, &der);

    if (len <= 0)
	return (NULL);
    p = der;
    pub = d2i_PUBKEY(NULL, &p, len);
    OPENSSL_free(der);
    return (pub);
}

/*
 * dnskey_load - through keys_load(), the one reader of private key files
 * (read(2) into a wiped buffer), without its permission check: -t and
 * rotate judge DNS, and the milter's own load reports unsafe modes.
 */
const char *dnskey_load(const char *path, struct dnskey *key)
{
    struct dkim_key priv;
    const char *err;

    memset(key, 0, sizeof(*key));
    if ((err = keys_load(path, &priv, NULL)) != NULL)
	return (err);
    key->type = priv.type == KEY_RSA ? DNSKEY_RSA : DNSKEY_ED25519;
    key->pkey = dnskey_public(priv.pkey);
    keys_free(&priv);
    return (key->pkey ? NULL : "cannot extract the public key");
}

void    dnskey_free(struct dnskey *key)
{
    EVP_PKEY_free(key->pkey);
    memset(key, 0, sizeof(*key));
}

const char *dnskey_type_name(int type)
{
    return (type == DNSKEY_RSA ? "rsa" : "ed25519");
}

/* Tag-list parsing (RFC 6376 3.2) into at most DNSKEY_TAGS tags. */

#define DNSKEY_TAGS	32

struct dnskey_tag {
    char   *name;
    char   *value;				/* surrounding FWS removed */
};

#define DNSKEY_FWS(c)	((c) == ' ' || (c) == '\t' || (c) == '\r' || (c) == '\n')

static char *dnskey_trim(char *s)
{
    char   *end;

    while (DNSKEY_FWS(*s))
	s++;
    end = s + strlen(s);
    while (end > s && DNSKEY_FWS(end[-1]))
	*--end = 0;
    return (s);
}

/* dnskey_tags - split text (modified) into tags; NULL or the reason */

static const char *dnskey_tags(char *text, struct dnskey_tag *tags, int *count)
{
    char   *spec = text, *next, *eq;

    *count = 0;
    for (; spec; spec = next) {
	if ((next = strchr(spec, ';')) != NULL)
	    *next++ = 0;
	if (*dnskey_trim(spec) == 0 && next == NULL && *count > 0)
	    break;				/* a trailing ';' */
	if ((eq = strchr(spec, '=')) == NULL)
	    return ("a tag without '=' (or an empty tag between two ';')");
	*eq = 0;
	tags[*count].name = dnskey_trim(spec);
	tags[*count].value = dnskey_trim(eq + 1);
	if (!isalpha((unsigned char) tags[*count].name[0]))
	    return ("a malformed tag name");
	for (char *c = tags[*count].name; *c; c++)
	    if (!isalnum((unsigned char) *c) && *c != '_')
		return ("a malformed tag name");
	for (char *c = tags[*count].value; *c; c++)
	    if (!DNSKEY_FWS(*c) && (*c < 0x21 || *c > 0x7e))
		return ("a control or 8-bit character in a tag value");
	for (int i = 0; i < *count; i++)
	    if (strcmp(tags[i].name, tags[*count].name) == 0)
		return ("a duplicate tag (RFC 6376 3.2)");
	if (++*count == DNSKEY_TAGS)
	    return ("too many tags");
    }
    return (NULL);
}

static const char *dnskey_get(struct dnskey_tag *tags, int count, const char *name)
{
    for (int i = 0; i < count; i++)
	if (strcmp(tags[i].name, name) == 0)
	    return (tags[i].value);
    return (NULL);
}

/* dnskey_in_list - does a colon-separated list hold word (any case)? */

static int dnskey_in_list(const char *list, const char *word)
{
    size_t  wlen = strlen(word);

    for (const char *p = list; *p;) {
	size_t  n;

	while (DNSKEY_FWS(*p) || *p == ':')
	    p++;
	n = strcspn(p, ": \t\r\n");
	if (n == wlen && strncasecmp(p, word, n) == 0)
	    return (1);
	p += n;
    }
    return (0);
}

/* dnskey_base64 - strict base64, FWS allowed anywhere; malloc'ed bytes */

static unsigned char *dnskey_base64(const char *text, int *len)
{
    size_t  n = 0, pad = 0;
    char   *clean = xmalloc(strlen(text) + 1);
    unsigned char *out = NULL;

    for (const char *c = text; *c; c++) {
	if (DNSKEY_FWS(*c))
	    continue;
	if (*c == '=') {
	    if (++pad > 2)
		goto done;
	} else if (pad || !(isalnum((unsigned char) *c) || *c == '+' || *c == '/')) {
	    goto done;
	}
	clean[n++] = *c;
    }
    if (n == 0 || n % 4 != 0)
	goto done;
    out = xmalloc(n / 4 * 3 + 1);
    if ((*len = EVP_DecodeBlock(out, (unsigned char *) clean, (int) n)) < 0) {
	free(out);
	out = NULL;
	goto done;
    }
    *len -= (int) pad;
done:
    free(clean);
    return (out);
}

/*
 * dnskey_decode - the record's p= as a public key of the given type;
 * *bare: an RSA key given as a bare RSAPublicKey (PKCS#1)
 */
static EVP_PKEY *dnskey_decode(int type, const unsigned char *der, int len, int *bare)
{
    const unsigned char *p = der;
    EVP_PKEY *pkey;

    *bare = 0;
    if (type == DNSKEY_ED25519)
	return (len == 32 ? EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, der, 32)
		: NULL);
    if ((pkey = d2i_PUBKEY(NULL, &p, len)) != NULL) {	/* SubjectPublicKeyInfo */
	if (EVP_PKEY_base_id(pkey) == EVP_PKEY_RSA && p == der + len)
	    return (pkey);
	EVP_PKEY_free(pkey);
	return (NULL);
    }
    p = der;					/* a bare RSAPublicKey, as some publish */
    pkey = d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, len);
    if (pkey && p != der + len) {
	EVP_PKEY_free(pkey);
	pkey = NULL;
    }
    *bare = pkey != NULL;
    return (pkey);
}

/* dnskey_shown - a sender's tag value as a reason may quote it */

static const char *dnskey_shown(const char *value, char *buf, size_t size)
{
    size_t  n = 0;

    for (; *value && n + 1 < size; value++)
	buf[n++] = *value > 0x20 && *value < 0x7f && !strchr("()\\\"", *value) ? *value : '?';
    buf[n] = 0;
    return (buf);
}

#define DNSKEY_WHY(...)	(snprintf(why, whylen, __VA_ARGS__))

/*
 * dnskey_exact - a record we publish writes k= and s= as every verifier
 * reads them: RFC 5234 makes "rsa" and "email" case-insensitive, and
 * libopendkim reads k=RSA, but dkimpy compares k= and the whole s= value
 * byte for byte (k=RSA, s=EMAIL, s=email:*: every signature failed after
 * -t --dns and rotate --activate passed them). NULL or why not.
 */
static const char *dnskey_exact(const char *k, const char *s)
{
    if (k && strcmp(k, "rsa") != 0 && strcmp(k, "ed25519") != 0)
	return ("k= must be written rsa or ed25519, in lower case: dkimpy and others "
		"refuse any other spelling");
    if (s && strcmp(s, "*") != 0 && strcmp(s, "email") != 0)
	return ("s= must be written email or *, alone and in lower case: dkimpy and "
		"others refuse any other spelling or a list");
    return (NULL);
}

/*
 * dnskey_key - the checks on a parsed tag-list that need no key file:
 * DNSKEY_OK with the key (*bare: p= was a bare RSAPublicKey),
 * DNSKEY_REVOKED or DNSKEY_INVALID with why; with exact set, as a
 * record of ours (dnskey_exact())
 */
static int dnskey_key(struct dnskey_tag *tags, int count, int exact, int *rtype,
		              EVP_PKEY **pkey, int *bare, char *why, size_t whylen)
{
    const char *v = dnskey_get(tags, count, "v"), *h = dnskey_get(tags, count, "h");
    const char *k = dnskey_get(tags, count, "k"), *p = dnskey_get(tags, count, "p");
    const char *s = dnskey_get(tags, count, "s");
    char    shown[40];
    unsigned char *der;
    int     len;

    if (v && (strcmp(tags[0].name, "v") != 0 || strcmp(v, "DKIM1") != 0))
	return (DNSKEY_WHY("v= must come first and be DKIM1 (RFC 6376 3.6.1)"),
		DNSKEY_INVALID);
    if (k && strcasecmp(k, "rsa") != 0 && strcasecmp(k, "ed25519") != 0)
	return (DNSKEY_WHY("unknown key type k=%s", dnskey_shown(k, shown, 33)),
		DNSKEY_INVALID);
    if (h && !dnskey_in_list(h, "sha256"))
	return (DNSKEY_WHY("h=%s does not allow sha256", dnskey_shown(h, shown, 33)),
		DNSKEY_INVALID);
    if (s && !dnskey_in_list(s, "*") && !dnskey_in_list(s, "email"))
	return (DNSKEY_WHY("s=%s excludes email", dnskey_shown(s, shown, 33)),
		DNSKEY_INVALID);
    if (p == NULL)
	return (DNSKEY_WHY("no p= tag"), DNSKEY_INVALID);
    if (exact && dnskey_exact(k, s) != NULL)
	return (DNSKEY_WHY("%s", dnskey_exact(k, s)), DNSKEY_INVALID);
    *rtype = k && strcasecmp(k, "ed25519") == 0 ? DNSKEY_ED25519 : DNSKEY_RSA;
    if (*p == 0)
	return (DNSKEY_WHY("p= is empty: the key is revoked"), DNSKEY_REVOKED);
    if ((der = dnskey_base64(p, &len)) == NULL)
	return (DNSKEY_WHY("p= is not valid base64"), DNSKEY_INVALID);
    *pkey = dnskey_decode(*rtype, der, len, bare);
    free(der);
    if (*pkey == NULL)
	return (DNSKEY_WHY("p= does not decode as %s public key",
			   *rtype == DNSKEY_RSA ? "an RSA" : "a 32-byte Ed25519"),
		DNSKEY_INVALID);
    return (DNSKEY_OK);
}

/* dnskey_judge - the checks on a parsed tag-list, and the key file's key */

static int dnskey_judge(struct dnskey_tag *tags, int count, const struct dnskey *key,
			        char *why, size_t whylen)
{
    const char *t = dnskey_get(tags, count, "t");
    int     rtype, bare, status;
    EVP_PKEY *pkey = NULL;

    if ((status = dnskey_key(tags, count, 1, &rtype, &pkey, &bare, why, whylen)) != DNSKEY_OK)
	return (status);
    if (rtype != key->type) {
	status = DNSKEY_MISMATCH;
	DNSKEY_WHY("the record is k=%s, the key file is %s", dnskey_type_name(rtype),
		   dnskey_type_name(key->type));
    } else if (EVP_PKEY_eq(pkey, key->pkey) != 1) {
	status = DNSKEY_MISMATCH;
	DNSKEY_WHY("the record's p= is another %s key than the key file's",
		   dnskey_type_name(rtype));
    } else {
	status = DNSKEY_OK;
	DNSKEY_WHY("%s%s", t && dnskey_in_list(t, "y") ? "t=y: receivers may treat failures "
		   "as unsigned (testing); " : "", t && dnskey_in_list(t, "s") ?
		   "t=s: signatures must not use a subdomain in i=; " : "");
    }
    EVP_PKEY_free(pkey);
    return (status);
}

/* dnskey_parse - a NUL-terminated copy of text split into tags; NULL: invalid */

static char *dnskey_parse(const char *text, size_t len, struct dnskey_tag *tags,
			          int *count, char *why, size_t whylen)
{
    char   *copy;
    const char *err;

    if (memchr(text, 0, len) != NULL)
	return (DNSKEY_WHY("a NUL byte in the record"), NULL);
    copy = xmalloc(len + 1);
    memcpy(copy, text, len);
    copy[len] = 0;
    if ((err = dnskey_tags(copy, tags, count)) != NULL) {
	DNSKEY_WHY("%s", err);
	free(copy);
	return (NULL);
    }
    why[0] = 0;
    return (copy);
}

int     dnskey_record(const char *text, size_t len, const struct dnskey *key,
		              char *why, size_t whylen)
{
    struct dnskey_tag tags[DNSKEY_TAGS];
    char   *copy;
    int     count, status;

    if ((copy = dnskey_parse(text, len, tags, &count, why, whylen)) == NULL)
	return (DNSKEY_INVALID);
    status = dnskey_judge(tags, count, key, why, whylen);
    free(copy);
    return (status);
}

/* dnskey_reencode - the same tags, p= as SubjectPublicKeyInfo */

static char *dnskey_reencode(struct dnskey_tag *tags, int count, EVP_PKEY *pkey)
{
    unsigned char *der = NULL;
    int     len = i2d_PUBKEY(pkey, &der);
    size_t  size = 1, n = 0;
    char   *b64, *out;

    if (len <= 0)
	return (NULL);
    b64 = xmalloc(4 * ((len + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *) b64, der, len);
    OPENSSL_free(der);
    for (int i = 0; i < count; i++)
	size += strlen(tags[i].name) + strlen(tags[i].value) + strlen(b64) + 3;
    out = xmalloc(size);
    for (int i = 0; i < count; i++)
	n += snprintf(out + n, size - n, "%s%s=%s", i ? "; " : "", tags[i].name,
		      strcmp(tags[i].name, "p") == 0 ? b64 : tags[i].value);
    free(b64);
    return (out);
}

int     dnskey_verifiable(const char *text, size_t len, int *bits, char **record,
			          char *why, size_t whylen)
{
    struct dnskey_tag tags[DNSKEY_TAGS];
    EVP_PKEY *pkey = NULL;
    char   *copy;
    int     count, rtype, bare, status;

    *bits = 0;
    *record = NULL;
    if ((copy = dnskey_parse(text, len, tags, &count, why, whylen)) == NULL)
	return (DNSKEY_INVALID);
    if ((status = dnskey_key(tags, count, 0, &rtype, &pkey, &bare, why, whylen)) == DNSKEY_OK) {
	*bits = EVP_PKEY_get_bits(pkey);
	if (rtype == DNSKEY_RSA && *bits < DNSKEY_RSA_MIN_BITS) {
	    status = DNSKEY_TOOSMALL;
	    DNSKEY_WHY("RSA key of %d bits; RFC 8301 requires %d", *bits, DNSKEY_RSA_MIN_BITS);
	} else if (bare) {
	    if ((*record = dnskey_reencode(tags, count, pkey)) != NULL)
		status = DNSKEY_REENCODE;
	    else
		status = (DNSKEY_WHY("p= cannot be re-encoded"), DNSKEY_INVALID);
	}
    }
    EVP_PKEY_free(pkey);
    free(copy);
    return (status);
}

int     dnskey_records(int count, const char *const *texts, const size_t *lens,
		               const struct dnskey *key, char *why, size_t whylen)
{
    char    one[256] = "";
    int     status;

    if (count == 0)
	return (DNSKEY_WHY("no TXT record"), DNSKEY_MISSING);
    for (int i = 0; i < count; i++) {
	if ((status = dnskey_record(texts[i], lens[i], key, one, sizeof(one))) == DNSKEY_OK)
	    continue;
	if (count == 1)
	    DNSKEY_WHY("%s", one);
	else
	    DNSKEY_WHY("%d TXT records, a verifier may use any; record %d: %s", count,
		       i + 1, one);
	return (status);
    }
    if (count == 1)
	DNSKEY_WHY("%s", one);
    else
	DNSKEY_WHY("%d TXT records, all matching%s%s", count, one[0] ? "; " : "", one);
    return (DNSKEY_OK);
}
