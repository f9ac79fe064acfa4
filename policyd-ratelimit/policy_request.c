/*
 * NAME
 *	policy_request 3
 * SUMMARY
 *	parse Postfix policy delegation requests
 * SYNOPSIS
 *	#include "policy_request.h"
 *
 *	void	policy_request_init(&req)
 *	const char *policy_request_add_line(&req, line, len)
 *	const char *policy_request_finish(&req)
 *	const char *policy_request_get(&req, "sasl_username")
 *	void	policy_request_reset(&req)
 * DESCRIPTION
 *	A request is "name=value" lines ended by an empty line
 *	(SMTPD_POLICY_README). policy_request_add_line() takes one line
 *	without its newline (a trailing CR is dropped).
 *	policy_request_finish() is called at the empty line: it insists on
 *	request=smtpd_access_policy. Unknown attributes are kept (and
 *	ignored by callers), as the protocol requires.
 *
 *	Bounds: a line of at most POLICY_LINE_MAX bytes, at most
 *	POLICY_ATTR_MAX attributes, POLICY_REQUEST_MAX bytes per request.
 *	Postfix 3.7 sends about 40 short attributes.
 * DIAGNOSTICS
 *	Both functions return NULL or a static error text; after an error
 *	the request must be dropped and its connection closed without a
 *	reply (the protocol has no error reply).
 */

#include "build_config.h"

#include <stdlib.h>
#include <string.h>

#include "policy_request.h"
#include "xalloc.h"

void    policy_request_init(struct policy_request *req)
{
    memset(req, 0, sizeof(*req));
}

void    policy_request_reset(struct policy_request *req)
{
    req->len = 0;
    req->count = 0;
}

void    policy_request_free(struct policy_request *req)
{
    free(req->buf);
    policy_request_init(req);
}

static int policy_name_char(int ch)
{
    return ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
	    || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '.');
}

static unsigned policy_request_store(struct policy_request *req, const char *text, size_t len)
{
    unsigned offset = (unsigned) req->len;

    if (req->len + len + 1 > req->cap) {
	req->cap = req->cap ? req->cap * 2 : 1024;
	while (req->cap < req->len + len + 1)
	    req->cap *= 2;
	req->buf = xrealloc(req->buf, req->cap);
    }
    memcpy(req->buf + req->len, text, len);
    req->buf[req->len + len] = 0;
    req->len += len + 1;
    return (offset);
}

const char *policy_request_add_line(struct policy_request *req, const char *line, size_t len)
{
    const char *eq;
    size_t  name_len;

    if (len > 0 && line[len - 1] == '\r')
	len--;
    if (len > POLICY_LINE_MAX)
	return ("attribute line too long");
    if (req->count >= POLICY_ATTR_MAX)
	return ("too many attributes");
    if (req->len + len + 2 > POLICY_REQUEST_MAX)
	return ("request too large");
    if ((eq = memchr(line, '=', len)) == NULL)
	return ("malformed attribute: no '='");
    name_len = eq - line;
    if (name_len == 0)
	return ("malformed attribute: empty name");
    for (size_t i = 0; i < name_len; i++)
	if (!policy_name_char((unsigned char) line[i]))
	    return ("malformed attribute: bad character in name");
    for (size_t i = name_len + 1; i < len; i++)
	if ((unsigned char) line[i] < 0x20 && line[i] != '\t')
	    return ("malformed attribute: control character in value");
    req->attrs[req->count].name = policy_request_store(req, line, name_len);
    req->attrs[req->count].value = policy_request_store(req, eq + 1, len - name_len - 1);
    req->count++;
    return (NULL);
}

const char *policy_request_get(const struct policy_request *req, const char *name)
{
    for (int i = 0; i < req->count; i++) {
	const char *candidate = req->buf + req->attrs[i].name;

	/* first byte first: ~40 attributes, called ~15 times per request */
	if (candidate[0] == name[0] && strcmp(candidate, name) == 0)
	    return (req->buf + req->attrs[i].value);
    }
    return (NULL);
}

const char *policy_request_finish(const struct policy_request *req)
{
    const char *type = policy_request_get(req, "request");

    if (req->count == 0)
	return ("empty request");
    if (type == NULL)
	return ("missing request= attribute");
    if (strcmp(type, "smtpd_access_policy") != 0)
	return ("unknown request type (expected request=smtpd_access_policy)");
    return (NULL);
}
