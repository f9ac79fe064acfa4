/*
 * NAME
 *	keys 3
 * SUMMARY
 *	DKIM private keys (RSA, Ed25519) with OpenSSL
 * SYNOPSIS
 *	#include "keys.h"
 *
 *	const char *keys_load(path, &key, &keys_policy)
 *	void	keys_share(&from, &to)
 *	char	*keys_dns_record(&key)
 *	const char *keys_generate(type, bits, &key)
 * DESCRIPTION
 *	A key file holds a PEM private key (PKCS#1 or PKCS#8, RSA or
 *	Ed25519: the type comes from the file), or, for Ed25519, the raw
 *	base64 seed that dkimpy and Rspamd write (32 bytes; 64 bytes of
 *	seed and public key are accepted too). Every key is normalised to
 *	PKCS#8 PEM for libopendkim, which needs Ed25519 keys as PEM, and
 *	its public half is kept for the DNS record (p=): the DER
 *	SubjectPublicKeyInfo for RSA, the raw 32 bytes for Ed25519
 *	(RFC 8463).
 *
 *	Private key material is touched only here. A loaded key is one
 *	EVP_PKEY (signed with by dkim_sign(3), which copies the signing
 *	context set up here once per key); no PEM copy is kept: the
 *	file's bytes are read into one buffer that is wiped once decoded,
 *	and keys_free() frees the EVP_PKEY, which clears its private half.
 *	keys_share() gives a second KeyTable row that names the same file
 *	the key already loaded (one more reference, no second decode).
 *	keys_generate() and keys_from_text() also make PKCS#8 PEM text,
 *	for milter-dkim-keygen to write.
 *
 *	With a keys_policy whose require_safe is set, keys_load() refuses
 *	a file that is not regular, is readable or writable by others,
 *	writable by its group, or readable by its group unless that is
 *	the daemon's group (keys_safe()), or that lies in a directory
 *	others may write to, unless it is sticky (keys_safe_dirs()).
 * DIAGNOSTICS
 *	NULL on success, or a static error text: unreadable file, not a
 *	key, an encrypted key (no pass phrase is asked for: OpenSSL's
 *	default would prompt on the terminal), unsupported type, RSA
 *	shorter than 1024 bits or longer than KEYS_RSA_MAX_BITS (4096, as
 *	milter-dkim-keygen makes at most: a larger key's record is more
 *	than libopendkim reads, so OpenDKIM receivers fail its signatures).
 */

#include "build_config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "keys.h"
#include "xalloc.h"

#define KEYS_FILE_MAX	65536

static char *keys_base64(const unsigned char *data, int len)
{
    char   *out = xmalloc(4 * ((len + 2) / 3) + 1);

    EVP_EncodeBlock((unsigned char *) out, data, len);
    return (out);
}

/*
 * keys_sign_templates - signing contexts set up once per key, at load:
 * each signature duplicates one (dkim_sign(3)) instead of making a new
 * context, which fetched the algorithm from the provider store (a lookup
 * under a lock) for every message. No template: dkim_sign() sets up a
 * context itself, as before.
 */
static void keys_sign_templates(struct dkim_key *key)
{
    if (key->type == KEY_RSA) {
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(key->pkey, NULL);

	if (ctx && EVP_PKEY_sign_init(ctx) == 1
	    && EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1
	    && EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1)
	    key->rsa_sign = ctx;
	else
	    EVP_PKEY_CTX_free(ctx);
    } else {
	EVP_MD_CTX *md = EVP_MD_CTX_new();

	if (md && EVP_DigestSignInit(md, NULL, NULL, NULL, key->pkey) == 1)
	    key->ed_sign = md;
	else
	    EVP_MD_CTX_free(md);
    }
    ERR_clear_error();
}

/* keys_fill - PEM text and public half from an EVP_PKEY */

static const char *keys_fill(EVP_PKEY *pkey, struct dkim_key *key, int want_pem)
{
    BIO    *bio = BIO_new(BIO_s_mem());
    unsigned char raw[32], *der = NULL;
    size_t  raw_len = sizeof(raw);
    char   *data;
    long    len;
    int     der_len;

    memset(key, 0, sizeof(*key));
    switch (EVP_PKEY_base_id(pkey)) {
    case EVP_PKEY_RSA:
	key->type = KEY_RSA;
	key->bits = EVP_PKEY_bits(pkey);
	if (key->bits < 1024) {
	    BIO_free(bio);
	    return ("RSA key shorter than 1024 bits (RFC 8301)");
	}
	if (key->bits > KEYS_RSA_MAX_BITS) {
	    BIO_free(bio);
	    return ("RSA key longer than 4096 bits (" KEYS_RSA_MAX_WHY ")");
	}
	if ((der_len = i2d_PUBKEY(pkey, &der)) <= 0) {
	    BIO_free(bio);
	    return ("cannot encode the RSA public key");
	}
	key->public_b64 = keys_base64(der, der_len);
	OPENSSL_free(der);
	break;
    case EVP_PKEY_ED25519:
	key->type = KEY_ED25519;
	key->bits = 256;
	if (EVP_PKEY_get_raw_public_key(pkey, raw, &raw_len) != 1) {
	    BIO_free(bio);
	    return ("cannot extract the Ed25519 public key");
	}
	key->public_b64 = keys_base64(raw, (int) raw_len);
	break;
    default:
	BIO_free(bio);
	return ("unsupported key type (RSA or Ed25519 only)");
    }
    key->pkey = pkey;
    keys_sign_templates(key);
    if (want_pem) {
	PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL);
	len = BIO_get_mem_data(bio, &data);
	key->pem = xmalloc(len + 1);
	memcpy(key->pem, data, len);
	key->pem[len] = 0;
	OPENSSL_cleanse(data, len);
    }
    BIO_free(bio);
    return (NULL);
}

/* keys_raw_ed25519 - base64 of a 32-byte seed (or 64: seed + public) */

static EVP_PKEY *keys_raw_ed25519(const char *text, size_t len)
{
    unsigned char buf[128];
    char    clean[200];
    size_t  n = 0;
    int     decoded;

    for (size_t i = 0; i < len; i++)
	if (!isspace((unsigned char) text[i])) {
	    if (n + 1 >= sizeof(clean))
		return (NULL);
	    clean[n++] = text[i];
	}
    clean[n] = 0;
    if (n != 44 && n != 88)
	return (NULL);
    decoded = EVP_DecodeBlock(buf, (unsigned char *) clean, (int) n);
    decoded -= (clean[n - 1] == '=') + (clean[n - 2] == '=');
    if (decoded != 32 && decoded != 64)
	return (NULL);
    return (EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, buf, 32));
}

/*
 * keys_no_passphrase - OpenSSL's default asks for the pass phrase of an
 * encrypted key on the terminal: -t, or a reload of a daemon started
 * with -f from a shell, waited there for it (and SIGTERM with it).
 */
static int keys_no_passphrase(char *buf, int size, int rwflag, void *ctx)
{
    (void) buf;
    (void) size;
    (void) rwflag;
    (void) ctx;
    return (-1);
}

static const char *keys_parse(const char *text, size_t len, struct dkim_key *key,
			               int want_pem)
{
    BIO    *bio = BIO_new_mem_buf(text, (int) len);
    EVP_PKEY *pkey = PEM_read_bio_PrivateKey(bio, NULL, keys_no_passphrase, NULL);
    const char *err;

    BIO_free(bio);
    ERR_clear_error();				/* the main thread's queue */
    memset(key, 0, sizeof(*key));
    if (pkey == NULL && (memmem(text, len, "ENCRYPTED", 9) != NULL))
	return ("an encrypted private key (a daemon has nobody to ask for the pass "
		"phrase: write it unencrypted, mode 0600 or 0440, see require_safe_keys)");
    if (pkey == NULL && (pkey = keys_raw_ed25519(text, len)) == NULL)
	return ("not a PEM private key, nor a base64 Ed25519 seed");
    if ((err = keys_fill(pkey, key, want_pem)) != NULL) {
	EVP_PKEY_free(pkey);
	keys_free(key);
    }
    return (err);
}

const char *keys_from_text(const char *text, size_t len, struct dkim_key *key)
{
    return (keys_parse(text, len, key, 1));
}

/*
 * keys_safe - opendkim's RequireSafeKeys: nobody but the owner may write
 * the file, and others may not read it; the group may read it only when
 * it is the daemon's own group (Kubernetes: a Secret with defaultMode
 * 0440 and fsGroup): one of kp->groups.
 */
const char *keys_safe(const struct stat *st, const struct keys_policy *kp)
{
    int     ours = 0;

    for (int i = 0; i < kp->ngroups; i++)
	ours |= st->st_gid == kp->groups[i];
    if (!S_ISREG(st->st_mode))
	return ("not a regular file");
    if (st->st_mode & (S_IROTH | S_IWOTH))
	return ("key file readable or writable by others (chmod o-rw; see require_safe_keys)");
    if (st->st_mode & S_IWGRP)
	return ("key file writable by its group (chmod g-w; see require_safe_keys)");
    if ((st->st_mode & S_IRGRP) && !ours)
	return ("key file readable by a group other than the daemon's (chmod g-r, or chgrp "
		"to the daemon's group; see require_safe_keys)");
    return (NULL);
}

/*
 * keys_safe_dirs - opendkim's RequireSafeKeys also refuses a key in a
 * directory others may write to (unless sticky, as /tmp): anyone could
 * rename their own key, or a link to another file, over ours, and the
 * next reload would sign with it. Both the path as written (its links
 * can be replaced too) and the file's real directories are checked.
 */
static const char *keys_safe_dirs(const char *path)
{
    static __thread char why[PATH_MAX + 128];
    char    real[PATH_MAX], *copy, *slash;
    const char *paths[2] = {path, realpath(path, real)};
    struct stat st;

    for (int i = 0; i < 2 && paths[i]; i++) {
	copy = xstrdup(paths[i]);
	while ((slash = strrchr(copy, '/')) != NULL) {
	    slash[slash == copy] = 0;		/* "/" itself last */
	    if (stat(copy, &st) == 0 && (st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX)) {
		snprintf(why, sizeof(why), "directory %s is writable by others: anyone may "
			 "replace the key (chmod o-w; see require_safe_keys)", copy);
		free(copy);
		return (why);
	    }
	    if (slash == copy)
		break;
	}
	free(copy);
    }
    return (NULL);
}

/*
 * keys_load - read with read(2) into one buffer that is wiped at once:
 * no stdio buffer keeps a copy of the key. The mode is checked on the
 * open descriptor (what was read is what was checked).
 */
const char *keys_load(const char *path, struct dkim_key *key, const struct keys_policy *kp)
{
    int     fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);	/* a FIFO: no wait */
    char   *text;
    ssize_t n = 0;
    size_t  len = 0;
    struct stat st;
    const char *err = NULL;
    static __thread char why[128];		/* EMFILE or ENOENT: say which */

    memset(key, 0, sizeof(*key));
    if (fd < 0) {
	snprintf(why, sizeof(why), "cannot open the key file: %s", strerror(errno));
	return (why);
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)
	|| (kp && kp->require_safe && ((err = keys_safe(&st, kp)) != NULL
				       || (err = keys_safe_dirs(path)) != NULL))) {
	close(fd);
	return (err ? err : "not a regular file");
    }
    text = xmalloc(KEYS_FILE_MAX);
    while (len < KEYS_FILE_MAX && (n = read(fd, text + len, KEYS_FILE_MAX - len)) > 0)
	len += n;
    close(fd);
    if (n < 0 || len == 0 || len == KEYS_FILE_MAX) {
	OPENSSL_cleanse(text, len);
	free(text);
	return (n < 0 ? "cannot read the key file" : len ? "key file too large"
		: "key file is empty");
    }
    err = keys_parse(text, len, key, 0);
    OPENSSL_cleanse(text, len);
    free(text);
    return (err);
}

/*
 * keys_share - another KeyTable row naming the same file: the key is
 * decoded once (OpenSSL's decoders cost about a millisecond a key, and
 * a KeyTable of 10,000 domains sharing one key took 12 s to load) and
 * shared by reference; each row gets its own copies of the signing
 * templates, which dkim_sign(3) duplicates per message anyway.
 */
void    keys_share(const struct dkim_key *from, struct dkim_key *to)
{
    memset(to, 0, sizeof(*to));
    to->type = from->type;
    to->bits = from->bits;
    if (EVP_PKEY_up_ref(from->pkey) == 1)
	to->pkey = from->pkey;
    to->public_b64 = from->public_b64 ? xstrdup(from->public_b64) : NULL;
    to->pem = from->pem ? xstrdup(from->pem) : NULL;
    if (from->rsa_sign)
	to->rsa_sign = EVP_PKEY_CTX_dup(from->rsa_sign);
    if (from->ed_sign && (to->ed_sign = EVP_MD_CTX_new()) != NULL
	&& EVP_MD_CTX_copy_ex(to->ed_sign, from->ed_sign) != 1) {
	EVP_MD_CTX_free(to->ed_sign);
	to->ed_sign = NULL;			/* dkim_sign() makes its own */
    }
    ERR_clear_error();
}

void    keys_free(struct dkim_key *key)
{
    if (key->pem) {
	OPENSSL_cleanse(key->pem, strlen(key->pem));
	free(key->pem);
    }
    EVP_PKEY_CTX_free(key->rsa_sign);
    EVP_MD_CTX_free(key->ed_sign);
    EVP_PKEY_free(key->pkey);			/* clears the private half */
    free(key->public_b64);
    memset(key, 0, sizeof(*key));
}

char   *keys_dns_record(const struct dkim_key *key)
{
    return (xasprintf("v=DKIM1; k=%s; p=%s", key->type == KEY_RSA ? "rsa" : "ed25519",
		      key->public_b64));
}

const char *keys_generate(enum key_type type, int bits, struct dkim_key *key)
{
    EVP_PKEY *pkey = type == KEY_RSA ? EVP_RSA_gen((unsigned) bits)
	: EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    const char *err;

    if (pkey == NULL)
	return ("key generation failed");
    if ((err = keys_fill(pkey, key, 1)) != NULL)
	EVP_PKEY_free(pkey);
    return (err);
}
