/* webhook_authres_fuzz - libFuzzer target for lmtp-webhook/authres.c: the
 * input is "FROM\nAUTHENTICATION-RESULTS[\nDKIM-SIGNATURE]" (the message
 * has a Content-Type too, so dkimsig.c reads h=). Every input gives a JSON
 * object; a header authres_trusted() refuses counts for nothing (the
 * object equals the one made without it); a parse is freed whole. */

#include "build_config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "authres.h"
#include "dkimsig.h"

#define ID "mx.planapulse.test"

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char   *text = malloc(size + 1), *ar, *sig, *with, *without;
    struct authres parsed;
    struct dkimsig_msg sigs = {0};
    json_t *j;

    memcpy(text, data, size);
    text[size] = 0;
    if ((ar = strchr(text, '\n')) != NULL)
	*ar++ = 0;
    else
	ar = text;
    if ((sig = strchr(ar, '\n')) != NULL) {
	*sig++ = 0;
	dkimsig_header(&sigs, "DKIM-Signature", sig, strlen(sig));
	dkimsig_header(&sigs, "content-type", "text/plain", 10);
    }
    with = authres_authentication(ar, text, 1, ID, &sigs);
    if ((j = json_loads(with, 0, NULL)) == NULL || !json_is_object(j))
	abort();				/* not a JSON object */
    json_decref(j);
    if (!authres_trusted(ar, strlen(ar), ID)) {
	without = authres_authentication(NULL, text, 1, ID, &sigs);
	if (strcmp(with, without) != 0)
	    abort();				/* an untrusted header counted */
	free(without);
    }
    if (authres_parse(ar, &parsed) == NULL) {
	for (int i = 0; i < parsed.count; i++)
	    if (parsed.res[i].method == NULL || parsed.res[i].result == NULL)
		abort();
	authres_free(&parsed);
    }
    dkimsig_free(&sigs);
    free(with);
    free(text);
    return (0);
}
