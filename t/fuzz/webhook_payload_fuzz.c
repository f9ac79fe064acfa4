/* webhook_payload_fuzz - libFuzzer target for lmtp-webhook/payload.c:
 * arbitrary bytes (split on NUL into headers, text, html and attachment
 * fields) must always give a payload that Jansson parses back, and
 * payload_utf8_clean() must always give valid UTF-8 that it leaves
 * unchanged when cleaned again. */

#include "build_config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "payload.h"

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_clean(const char *in, size_t len)
{
    size_t  n1, n2;
    char   *once = payload_utf8_clean(in, len, &n1);
    char   *twice = payload_utf8_clean(once, n1, &n2);

    if (n1 != n2 || memcmp(once, twice, n1) != 0)
	abort();				/* cleaning is idempotent */
    free(once);
    free(twice);
}

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct payload_envelope env = {"msg_x", "ws", "a@b", "c@d", 1};
    struct payload_message msg;
    const char *p = (const char *) data, *end = p + size;
    struct payload_bytes *slots[PAYLOAD_HEADER_COUNT + 2];
    size_t  len;
    char   *json;
    json_t *j;
    int     field = 0;

    check_clean((const char *) data, size);
    memset(&msg, 0, sizeof(msg));
    for (int i = 0; i < PAYLOAD_HEADER_COUNT; i++)
	slots[i] = &msg.header[i];
    slots[PAYLOAD_HEADER_COUNT] = &msg.text;
    slots[PAYLOAD_HEADER_COUNT + 1] = &msg.html;
    while (p < end) {
	const char *nul = memchr(p, 0, end - p);
	size_t  n = nul ? (size_t) (nul - p) : (size_t) (end - p);

	if (field < PAYLOAD_HEADER_COUNT + 2) {
	    payload_bytes_append(slots[field], p, n, 4096);
	} else {
	    struct payload_attachment *a = payload_attachment_add(&msg);

	    a->filename = strndup(p, n);
	    a->content_type = strdup("application/octet-stream");
	    a->size = n;
	    a->content_kept = n % 2;
	    payload_bytes_append(&a->content, p, n, 4096);
	}
	field++;
	p += n + 1;
    }
    msg.size = size;
    json = payload_build(&msg, &env, &len);
    if ((j = json_loadb(json, len, 0, NULL)) == NULL)
	abort();				/* always valid JSON */
    json_decref(j);
    free(json);
    payload_message_free(&msg);
    return (0);
}
