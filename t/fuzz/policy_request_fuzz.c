/* policy_request_fuzz - libFuzzer target for policyd-ratelimit/policy_request.c
 *
 * The input is a byte stream as a policy client would send it: split at
 * LF into lines and fed like conn.c does, finishing at each empty line.
 * Checked: no memory error (ASan/UBSan), every accepted value is
 * retrievable, bounds hold.
 */

#include "build_config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy_request.h"

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct policy_request req;
    const char *text = (const char *) data, *end = text + size;

    policy_request_init(&req);
    while (text < end) {
	const char *nl = memchr(text, '\n', end - text);
	size_t  len = nl ? (size_t) (nl - text) : (size_t) (end - text);

	if (len == 0 || (len == 1 && text[0] == '\r')) {
	    if (policy_request_finish(&req) == NULL
		&& policy_request_get(&req, "request") == NULL)
		abort();			/* finish accepted without request= */
	    policy_request_reset(&req);
	} else if (policy_request_add_line(&req, text, len) != NULL) {
	    break;				/* the connection would be closed */
	}
	if (req.count > POLICY_ATTR_MAX || req.len > POLICY_REQUEST_MAX)
	    abort();
	for (int i = 0; i < req.count; i++)
	    if (policy_request_get(&req, req.buf + req.attrs[i].name) == NULL)
		abort();
	if (nl == NULL)
	    break;
	text = nl + 1;
    }
    policy_request_free(&req);
    return (0);
}
