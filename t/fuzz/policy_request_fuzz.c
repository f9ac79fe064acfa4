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

/*
 * name_verdict - the name check as a byte loop (issue 18 made it scan 8
 * bytes at a time): 0 good, 1 no '=', 2 empty name, 3 bad byte in name.
 */
static int name_verdict(const char *line, size_t len)
{
    const char *eq = memchr(line, '=', len);

    if (eq == NULL)
	return (1);
    if (eq == line)
	return (2);
    for (const char *cp = line; cp < eq; cp++)
	if (!(*cp >= 'a' && *cp <= 'z') && !(*cp >= 'A' && *cp <= 'Z')
	    && !(*cp >= '0' && *cp <= '9') && *cp != '_' && *cp != '-' && *cp != '.')
	    return (3);
    return (0);
}

static int name_error(const char *err)
{
    if (err == NULL || strstr(err, "malformed attribute") == NULL
	|| strstr(err, "control character") != NULL)
	return (0);
    return (strstr(err, "no '='") ? 1 : strstr(err, "empty name") ? 2 : 3);
}

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
	} else {
	    const char *err = policy_request_add_line(&req, text, len);
	    size_t  cut = len > 0 && text[len - 1] == '\r' ? len - 1 : len;

	    /* a name refused exactly as the byte loop would (checked first) */
	    if ((err == NULL || name_error(err) || strstr(err, "control character"))
		&& name_error(err) != name_verdict(text, cut))
		abort();
	    if (err != NULL)
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
