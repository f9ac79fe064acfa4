/* dkim_keyrecord_fuzz - libFuzzer target for milter-dkim/dnskey.c: the DKIM key
 * record parser and judge (RFC 6376 3.6.1, RFC 8463). The input is split at
 * each '\n' into TXT records (a NUL stays inside a record) and judged against
 * an RSA and an Ed25519 key. Checked: no memory error; the verdict is one of
 * the statuses; the reason is a terminated string; "published and matching"
 * only for a record with a p= tag; one record judged alone and in a set of
 * one agree. The first record is also judged as a verifier would
 * (dnskey_verifiable()): its verdict is one of its statuses; a re-encoded
 * record is usable as it is, with the same bits; a reason holds no
 * parenthesis or control character but its own balanced "(RFC ...)". */

#include "build_config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "dnskey.h"

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RECORDS_MAX 16

static struct dnskey keys[2];

static void fuzz_keys(void)
{
    static const unsigned char seed[32] = {1, 2, 3};

    if (keys[0].pkey)
	return;
    keys[0].type = DNSKEY_RSA;
    keys[0].pkey = EVP_RSA_gen(1024);
    keys[1].type = DNSKEY_ED25519;
    keys[1].pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
    if (!keys[0].pkey || !keys[1].pkey)
	abort();
}

static int has_p(const char *text, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++)
	if (text[i] == 'p' && text[i + 1] == '=')
	    return (1);
    return (0);
}

/* fuzz_balanced - parentheses in a reason balanced, no control character */

static int fuzz_balanced(const char *why)
{
    int     depth = 0;

    for (; *why; why++) {
	if ((unsigned char) *why < 0x20 || (unsigned char) *why > 0x7e || *why == '\\')
	    return (0);
	if ((depth += (*why == '(') - (*why == ')')) < 0)
	    return (0);
    }
    return (depth == 0);
}

static void fuzz_verifiable(const char *text, size_t len)
{
    char    why[256], why2[256], *record = NULL, *again = NULL;
    int     bits, bits2, status;

    status = dnskey_verifiable(text, len, &bits, &record, why, sizeof(why));
    if (status != DNSKEY_OK && status != DNSKEY_REVOKED && status != DNSKEY_INVALID
	&& status != DNSKEY_TOOSMALL && status != DNSKEY_REENCODE)
	abort();
    if ((record != NULL) != (status == DNSKEY_REENCODE) || memchr(why, 0, sizeof(why)) == NULL)
	abort();
    if (status != DNSKEY_OK && status != DNSKEY_REENCODE && !fuzz_balanced(why))
	abort();
    if (record) {
	if (dnskey_verifiable(record, strlen(record), &bits2, &again, why2, sizeof(why2))
	    != DNSKEY_OK || bits2 != bits || again != NULL)
	    abort();
	free(record);
    }
}

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *texts[RECORDS_MAX];
    size_t  lens[RECORDS_MAX];
    const char *p = (const char *) data, *end = p + size;
    char    why[256], why1[256];
    int     n = 0;

    fuzz_keys();
    while (p <= end && n < RECORDS_MAX) {
	const char *nl = memchr(p, '\n', end - p);

	texts[n] = p;
	lens[n++] = (nl ? nl : end) - p;
	if (nl == NULL)
	    break;
	p = nl + 1;
    }
    fuzz_verifiable(texts[0], lens[0]);
    for (int k = 0; k < 2; k++) {
	int     one = dnskey_record(texts[0], lens[0], keys + k, why1, sizeof(why1));
	int     all = dnskey_records(n, texts, lens, keys + k, why, sizeof(why));

	if (one < DNSKEY_OK || one > DNSKEY_TEMPERROR || all < DNSKEY_OK
	    || all > DNSKEY_TEMPERROR || memchr(why, 0, sizeof(why)) == NULL
	    || memchr(why1, 0, sizeof(why1)) == NULL)
	    abort();
	if (one == DNSKEY_OK && !has_p(texts[0], lens[0]))
	    abort();
	if (n == 1 && one != all)
	    abort();
    }
    return (0);
}
