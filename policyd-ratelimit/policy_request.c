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
 *	int	policy_attribute_known(name)
 *	const char *policy_address_domain(addr, buf, size)
 *	int	policy_address_routed(addr)
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
 *
 *	policy_attribute_known() says whether Postfix 3.7 sends an
 *	attribute of that name (SMTPD_POLICY_README), or it is one this
 *	daemon derives (sender_domain, recipient_domain).
 *
 *	policy_address_domain() is the domain Postfix's trivial-rewrite
 *	routes an address to (rewrite_tree(), swap_bangpath and
 *	allow_percent_hack at their default yes): after the last '@';
 *	without '@', before the first '!' ("victim.example!u" is delivered
 *	to u@victim.example: it was charged to "[unqualified]"), else after
 *	the last '%'; "[unqualified]" without one (Postfix appends
 *	$myorigin). A bang path's domain is copied into buf.
 *
 *	policy_address_routed() says whether the local part of an address
 *	with a domain (before its last '@') holds a route: an '@' (Postfix
 *	passes "u@victim"@local unquoted, as u@victim@local), a '%' or a
 *	'!'. When the domain is one of Postfix's own, it delivers such an
 *	address to the route (resolve_dequoted_address, allow_percent_hack
 *	and swap_bangpath at their default yes), and no domain this daemon
 *	can name is the one the mail goes to.
 * DIAGNOSTICS
 *	Both functions return NULL or a static error text; after an error
 *	the request must be dropped and its connection closed without a
 *	reply (the protocol has no error reply).
 */

#include "build_config.h"

#include <stdint.h>
#include <stdio.h>
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

/*
 * Name bytes, by table: one load per byte (the test chain was the
 * biggest user-space item per request).
 */
static const unsigned char policy_name_chars[256] = {
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1,
    ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1,
    ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1,
    ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1,
    ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1,
    ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,
    ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,
    ['7'] = 1, ['8'] = 1, ['9'] = 1, ['_'] = 1, ['-'] = 1, ['.'] = 1,
};

/*
 * policy_name_span - the length of the name at line: its bytes up to the
 * first that is no name byte (the '=' in a good line). Eight bytes at a
 * time while they are all in [_a-z] (most of Postfix's names): on a
 * little-endian machine the lowest-addressed byte outside that set is
 * found exactly from the word's tests, because a carry or borrow from one
 * byte's test can only spoil the bytes above it; from there on byte by
 * byte, by table. With the '=' search this was ~100 of the ~200
 * instructions per attribute line.
 */
static size_t policy_name_span(const char *line, size_t len)
{
    size_t  i = 0;

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    const uint64_t ones = 0x0101010101010101ULL, high = 0x80 * ones;

    for (; i + 8 <= len; i += 8) {
	uint64_t x, tick, fast, bad;

	memcpy(&x, line + i, 8);
	tick = x ^ (0x60 * ones);		/* '`' (0x60) is no name byte */
	/* < 0x80, >= 0x5f ('_'), <= 0x7a ('z'), not '`' */
	fast = ~x & (x + 0x21 * ones) & ~(x + 0x05 * ones) & ~((tick - ones) & ~tick) & high;
	if ((bad = ~fast & high) != 0) {
	    i += (size_t) __builtin_ctzll(bad) >> 3;
	    break;
	}
    }
#endif
    while (i < len && policy_name_chars[(unsigned char) line[i]])
	i++;
    return (i);
}

/* policy_request_store - keep "name=value" as "name\0value\0": one copy */

static unsigned policy_request_store(struct policy_request *req, const char *line,
				             size_t len, size_t name_len)
{
    unsigned offset = (unsigned) req->len;

    if (req->len + len + 1 > req->cap) {
	req->cap = req->cap ? req->cap * 2 : 1024;
	while (req->cap < req->len + len + 1)
	    req->cap *= 2;
	req->buf = xrealloc(req->buf, req->cap);
    }
    memcpy(req->buf + req->len, line, len);
    req->buf[req->len + name_len] = 0;
    req->buf[req->len + len] = 0;
    req->len += len + 1;
    return (offset);
}

/*
 * policy_request_value_ok - no control character but TAB. Eight bytes
 * at a time: (x - 0x20..) & ~x & 0x80.. is non-zero exactly when some
 * byte is below 0x20; only such words are looked at byte by byte (a
 * TAB). The byte loop was a quarter of the user-space instructions per
 * request.
 */
static int policy_request_value_ok(const char *cp, size_t len)
{
    const uint64_t ones = 0x0101010101010101ULL;
    size_t  i = 0;

    for (; i + 8 <= len; i += 8) {
	uint64_t x;

	memcpy(&x, cp + i, 8);
	if (((x - 0x20 * ones) & ~x & 0x80 * ones) == 0)
	    continue;
	for (size_t j = i; j < i + 8; j++)
	    if ((unsigned char) cp[j] < 0x20 && cp[j] != '\t')
		return (0);
    }
    if (i < len && len >= 8) {			/* the tail: the last 8, again */
	uint64_t x;

	memcpy(&x, cp + len - 8, 8);
	if (((x - 0x20 * ones) & ~x & 0x80 * ones) == 0)
	    return (1);
    }
    for (; i < len; i++)
	if ((unsigned char) cp[i] < 0x20 && cp[i] != '\t')
	    return (0);
    return (1);
}

/*
 * policy_request_hash - a name's length and three of its bytes: enough
 * to skip nearly every strcmp() in policy_request_get(), at a constant
 * cost (a hash over every byte cost more than the comparisons it saved).
 */
static unsigned policy_request_hash(const char *name, size_t len)
{
    if (len == 0)
	return (0);
    return ((unsigned) (len & 0xff) | (unsigned) (unsigned char) name[0] << 8
	    | (unsigned) (unsigned char) name[len / 2] << 16
	    | (unsigned) (unsigned char) name[len - 1] << 24);
}

const char *policy_request_add_line(struct policy_request *req, const char *line, size_t len)
{
    size_t  name_len;
    unsigned offset;

    if (len > 0 && line[len - 1] == '\r')
	len--;
    if (len > POLICY_LINE_MAX)
	return ("attribute line too long");
    if (req->count >= POLICY_ATTR_MAX)
	return ("too many attributes");
    if (req->len + len + 2 > POLICY_REQUEST_MAX)
	return ("request too large");
    name_len = policy_name_span(line, len);
    if (name_len == len || line[name_len] != '=') {
	if (memchr(line, '=', len) == NULL)
	    return ("malformed attribute: no '='");
	return ("malformed attribute: bad character in name");
    }
    if (name_len == 0)
	return ("malformed attribute: empty name");
    if (!policy_request_value_ok(line + name_len + 1, len - name_len - 1))
	return ("malformed attribute: control character in value");
    offset = policy_request_store(req, line, len, name_len);
    req->attrs[req->count].hash = policy_request_hash(line, name_len);
    req->attrs[req->count].name = offset;
    req->attrs[req->count].value = offset + (unsigned) name_len + 1;
    req->count++;
    return (NULL);
}

const char *policy_request_get(const struct policy_request *req, const char *name)
{
    unsigned hash = policy_request_hash(name, strlen(name));

    /* hash first: ~40 attributes, called ~15 times per request */
    for (int i = 0; i < req->count; i++)
	if (req->attrs[i].hash == hash && strcmp(req->buf + req->attrs[i].name, name) == 0)
	    return (req->buf + req->attrs[i].value);
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

int     policy_attribute_known(const char *name)
{
    static const char *const known[] = {
	"request", "protocol_state", "protocol_name", "helo_name", "queue_id",
	"sender", "recipient", "recipient_count", "client_address", "client_name",
	"reverse_client_name", "instance", "sasl_method", "sasl_username",
	"sasl_sender", "size", "ccert_subject", "ccert_issuer", "ccert_fingerprint",
	"ccert_pubkey_fingerprint", "encryption_protocol", "encryption_cipher",
	"encryption_keysize", "etrn_domain", "stress", "client_port", "policy_context",
	"server_address", "server_port", "compatibility_level", "mail_version",
	"sender_domain", "recipient_domain",
    };

    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
	if (strcmp(name, known[i]) == 0)
	    return (1);
    return (0);
}

const char *policy_address_domain(const char *addr, char *buf, size_t size)
{
    const char *at = strrchr(addr, '@'), *bang;

    if (at == NULL && (bang = strchr(addr, '!')) != NULL) {
	snprintf(buf, size, "%.*s", (int) (bang - addr), addr);
	return (*buf ? buf : "[unqualified]");
    }
    if (at == NULL)
	at = strrchr(addr, '%');
    return (at == NULL || at[1] == 0 ? "[unqualified]" : at + 1);
}

int     policy_address_routed(const char *addr)
{
    const char *at = strrchr(addr, '@');

    return (at != NULL && strcspn(addr, "@%!") < (size_t) (at - addr));
}
