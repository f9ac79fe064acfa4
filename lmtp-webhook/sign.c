/*
 * NAME
 *	sign 3
 * SUMMARY
 *	Standard Webhooks v1 signatures
 * SYNOPSIS
 *	#include "sign.h"
 *
 *	const char *sign_key_parse(text, &key)
 *	const char *sign_key_load(path, &key)
 *	char	*sign_signature(&key, id, timestamp, body, body_len)
 *	char	*sign_base64(data, len)
 * DESCRIPTION
 *	sign_key_parse() takes a "whsec_<base64>" secret (the prefix may
 *	be left out; surrounding white space is ignored) and decodes the
 *	key: strict base64 ("====" is none), and not every byte zero (HMAC
 *	pads a key with zeros: "AAAA" signed as the empty key does, and
 *	anyone could forge the events; helper-124). sign_key_load() reads the secret from a file; it is the only
 *	place the secret is read. The whole file is the secret: a file
 *	larger than 1 KB or with a NUL byte is refused, not cut short;
 *	one that is no regular file (a FIFO would block the runner and
 *	every route with it) is refused unopened.
 *
 *	sign_signature() returns the value of the webhook-signature
 *	header, "v1,<base64 HMAC-SHA256(key, id.timestamp.body)>",
 *	malloc()ed. sign_base64() is plain base64 without line breaks.
 * DIAGNOSTICS
 *	The parsers return NULL or a static message.
 */

#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>

#include "sign.h"
#include "wh_alloc.h"

const char *sign_key_parse(const char *text, struct webhook_key *key)
{
    unsigned char decoded[sizeof(key->bytes) + 3];
    size_t  len, pad = 0;
    int     n;

    while (*text == ' ' || *text == '\t' || *text == '\n' || *text == '\r')
	text++;
    if (strncmp(text, "whsec_", 6) == 0)
	text += 6;
    len = strcspn(text, " \t\r\n");
    if (text[len + strspn(text + len, " \t\r\n")] != 0)
	return ("secret: one whsec_<base64> value expected");
    if (len == 0 || len % 4 != 0 || len / 4 * 3 > sizeof(decoded))
	return ("secret: base64 of 1 to 128 bytes expected");
    while (pad < 2 && text[len - 1 - pad] == '=')
	pad++;
    /* strict: EVP_DecodeBlock() read "====" as one zero byte */
    if (strspn(text, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
	!= len - pad || (n = EVP_DecodeBlock(decoded, (const unsigned char *) text,
					     (int) len)) < 0)
	return ("secret: not valid base64");
    key->len = (size_t) n - pad;
    if (key->len == 0 || key->len > sizeof(key->bytes))
	return ("secret: base64 of 1 to 128 bytes expected");
    for (size_t i = 0; i < key->len && decoded[i] == 0; i++)
	if (i + 1 == key->len)			/* HMAC pads a key with zeros */
	    return ("secret: every byte is zero, which signs as an empty key does");
    memcpy(key->bytes, decoded, key->len);
    return (NULL);
}

/*
 * sign_key_weak - why a key that parses is too short to be a secret, or
 * NULL: "changeme" is base64 of 6 bytes, and a Kubernetes Secret key
 * named wrong (the Redis password's file) parsed too; both signed every
 * event without a word (helper-121). Said, not refused: a running setup
 * must not stop posting at an upgrade.
 */
const char *sign_key_weak(const struct webhook_key *key)
{
    static _Thread_local char why[160];

    if (key->len >= SIGN_KEY_MIN)
	return (NULL);
    snprintf(why, sizeof(why), "the secret is %zu bytes, too short to resist guessing: "
	     "Standard Webhooks secrets are %d to 64 random bytes (whsec_ and the base64 of "
	     "openssl rand 32)", key->len, SIGN_KEY_MIN);
    return (why);
}

const char *sign_key_load(const char *path, struct webhook_key *key)
{
    static char err[300];
    char    text[1024];
    const char *msg;
    size_t  n;
    FILE   *fp = NULL;
    struct stat st;
    int     fd;
    const char *why = NULL;

    /* never wait on a FIFO or a device: the runner serves every route */
    if ((fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) < 0 || fstat(fd, &st) < 0)
	why = strerror(errno);
    else if (!S_ISREG(st.st_mode))
	why = "not a regular file";
    else if ((fp = fdopen(fd, "r")) == NULL)
	why = strerror(errno);
    if (why != NULL) {
	snprintf(err, sizeof(err), "%s: %s", path, why);
	if (fd >= 0)
	    close(fd);
	return (err);
    }
    /* the whole file is the secret: what a short read would leave out
     * (a second secret, a paste of the wrong file) must be refused */
    n = fread(text, 1, sizeof(text) - 1, fp);
    text[n] = 0;
    if (ferror(fp) || (n == sizeof(text) - 1 && getc(fp) != EOF) || ferror(fp)) {
	snprintf(err, sizeof(err), "%s: %s", path, ferror(fp) ? strerror(errno)
		 : "larger than 1 KB: one whsec_<base64> value expected");
	fclose(fp);
	return (err);
    }
    fclose(fp);
    if (memchr(text, 0, n) != NULL) {
	snprintf(err, sizeof(err), "%s: a NUL byte: one whsec_<base64> value expected", path);
	return (err);
    }
    if ((msg = sign_key_parse(text, key)) != NULL) {
	snprintf(err, sizeof(err), "%s: %s", path, msg);
	return (err);
    }
    return (NULL);
}

char   *sign_base64(const unsigned char *data, size_t len)
{
    char   *out = wh_malloc(4 * ((len + 2) / 3) + 1);

    /* EVP_EncodeBlock takes an int length: encode in slices */
    size_t  done = 0, w = 0;

    while (done < len) {
	size_t  chunk = len - done > (1u << 30) ? (1u << 30) : len - done;

	w += (size_t) EVP_EncodeBlock((unsigned char *) out + w, data + done, (int) chunk);
	done += chunk;
    }
    out[w] = 0;
    return (out);
}

char   *sign_signature(const struct webhook_key *key, const char *id,
			       long long timestamp, const char *body, size_t body_len)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t  mac_len = 0;
    char    stamp[32], digest[] = "SHA256", *b64, *out;
    OSSL_PARAM params[] = {
	OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
	OSSL_PARAM_construct_end(),
    };
    EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = hmac ? EVP_MAC_CTX_new(hmac) : NULL;

    snprintf(stamp, sizeof(stamp), ".%lld.", timestamp);
    if (ctx == NULL
	|| !EVP_MAC_init(ctx, key->bytes, key->len, params)
	|| !EVP_MAC_update(ctx, (const unsigned char *) id, strlen(id))
	|| !EVP_MAC_update(ctx, (const unsigned char *) stamp, strlen(stamp))
	|| !EVP_MAC_update(ctx, (const unsigned char *) body, body_len)
	|| !EVP_MAC_final(ctx, mac, &mac_len, sizeof(mac)))
	abort();				/* OpenSSL without HMAC-SHA256 */
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(hmac);
    b64 = sign_base64(mac, mac_len);
    out = wh_malloc(strlen(b64) + 4);
    strcpy(out, "v1,");
    strcat(out, b64);
    free(b64);
    return (out);
}
