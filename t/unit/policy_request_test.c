/* policy_request_test - unit tests for policyd-ratelimit/policy_request.c */

#include "build_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy_request.h"
#include "tap.h"

/* feed - add NUL-free lines of text; returns the first error or NULL */

static const char *feed(struct policy_request *req, const char *text)
{
    const char *err;

    while (*text) {
	const char *nl = strchr(text, '\n');
	size_t  len = nl ? (size_t) (nl - text) : strlen(text);

	if ((err = policy_request_add_line(req, text, len)) != NULL)
	    return (err);
	text += len + (nl != NULL);
    }
    return (NULL);
}

/*
 * test_value_bytes - the word-at-a-time check: every byte value at every
 * position of values of 0 to 40 bytes (crossing each 8-byte word and the
 * byte tail) is refused exactly when it is a control character but TAB.
 */
static void test_value_bytes(struct policy_request *req)
{
    char    line[64];
    int     wrong = 0, cases = 0;

    for (int len = 1; len <= 40; len++) {
	for (int pos = 0; pos < len; pos++) {
	    for (int byte = 0; byte < 256; byte++) {
		int     bad = byte < 0x20 && byte != '\t';
		const char *err;

		memcpy(line, "v=", 2);
		memset(line + 2, byte == 'x' ? 'y' : 'x', len);
		line[2 + pos] = (char) byte;
		policy_request_reset(req);
		err = policy_request_add_line(req, line, 2 + len);
		/* a CR at the very end is the line's own, stripped */
		if (byte == '\r' && pos == len - 1)
		    bad = 0;
		wrong += (err != NULL) != bad;
		if (err == NULL && !(byte == '\r' && pos == len - 1))
		    wrong += memcmp(policy_request_get(req, "v"), line + 2, len) != 0;
		cases++;
	    }
	}
    }
    is_int(wrong, 0, "%d values with each byte at each position: refused exactly when a "
	   "control character but TAB, else kept byte for byte", cases);
}

/* name_reference - the name check as a byte loop (before issue 18) */

static const char *name_reference(const char *line, size_t len)
{
    const char *eq = memchr(line, '=', len);

    if (eq == NULL)
	return ("malformed attribute: no '='");
    if (eq == line)
	return ("malformed attribute: empty name");
    for (const char *cp = line; cp < eq; cp++)
	if (!(*cp >= 'a' && *cp <= 'z') && !(*cp >= 'A' && *cp <= 'Z')
	    && !(*cp >= '0' && *cp <= '9') && *cp != '_' && *cp != '-' && *cp != '.')
	    return ("malformed attribute: bad character in name");
    return (NULL);
}

/*
 * test_name_bytes - the word-at-a-time name scan: every byte value at
 * every position of names of 1 to 40 bytes, on names of lower case and
 * '_' (the fast path), of upper case (the byte loop) and mixed, gives
 * the byte loop's answer, and a good line's name and value are kept.
 */
static void test_name_bytes(struct policy_request *req)
{
    static const char *const bases[] = {"protocol_state_and_more_of_it_xx_yy_zzzz",
	"PROTOCOL-STATE.AND_MORE_OF_IT_XX_YY_ZZZZ", "a_Z9-.b_Y8-.c_X7-.d_W6-.e_V5-.f_U4-.g_T3"};
    char    line[64];
    int     wrong = 0, cases = 0;

    for (size_t b = 0; b < sizeof(bases) / sizeof(bases[0]); b++) {
	for (int len = 1; len <= 40; len++) {
	    for (int pos = 0; pos < len; pos++) {
		for (int byte = 1; byte < 256; byte++) {
		    const char *want, *err;
		    size_t  n = (size_t) len + 3;

		    memcpy(line, bases[b], len);
		    line[pos] = (char) byte;
		    memcpy(line + len, "=v1", 3);
		    line[n] = 0;
		    want = name_reference(line, n);
		    policy_request_reset(req);
		    err = policy_request_add_line(req, line, n);
		    cases++;
		    if ((want == NULL) != (err == NULL) || (want && strcmp(want, err) != 0)) {
			if (wrong++ < 5)
			    diag("name %.*s: got %s, want %s", len, line, err ? err : "ok",
				 want ? want : "ok");
		    } else if (err == NULL && (req->count != 1
			 || strlen(req->buf + req->attrs[0].name) != (size_t) (strchr(line, '=') - line)
			 || strncmp(req->buf + req->attrs[0].name, line, strchr(line, '=') - line) != 0
			 || strcmp(req->buf + req->attrs[0].value, strchr(line, '=') + 1) != 0)) {
			if (wrong++ < 5)
			    diag("name %.*s: kept wrong", len, line);
		    }
		}
	    }
	}
    }
    is_int(wrong, 0, "%d names with each byte at each position: the byte loop's answer, "
	   "name and value kept", cases);
    policy_request_reset(req);
    is_str(policy_request_add_line(req, "protocol_state_and_more", 23),
	   "malformed attribute: no '='", "a long name without '=': no '='");
    is_str(policy_request_add_line(req, "protocol_state_and`more=1", 25),
	   "malformed attribute: bad character in name", "'`' inside a fast word is refused");
    is_str(policy_request_add_line(req, "protocol_state_and{more=1", 25),
	   "malformed attribute: bad character in name", "'{' inside a fast word is refused");
    is_str(policy_request_add_line(req, "protocol_state_and^more=1", 25),
	   "malformed attribute: bad character in name", "'^' inside a fast word is refused");
}

/* test_same_hash - names of one length and first, middle, last byte */

static void test_same_hash(struct policy_request *req)
{
    policy_request_reset(req);
    feed(req, "request=smtpd_access_policy\naxcxz=1\naycyz=2\nazczz=3");
    is_str(policy_request_get(req, "aycyz"), "2", "names that share length and sampled bytes "
	   "are told apart (middle)");
    is_str(policy_request_get(req, "azczz"), "3", "and the last of three");
    ok(policy_request_get(req, "awcwz") == NULL, "an absent name with the same sample is NULL");
    is_str(policy_request_get(req, "request"), "smtpd_access_policy", "others unaffected");
}

int     main(void)
{
    struct policy_request req;
    const char *err;
    char   *big;

    policy_request_init(&req);
    err = feed(&req, "request=smtpd_access_policy\nprotocol_state=RCPT\n"
	       "sasl_username=svc-billing\nrecipient=a@b.example\nccert_subject=\n"
	       "future_attribute=x=y");
    ok(err == NULL, "a well-formed request parses");
    ok(policy_request_finish(&req) == NULL, "and is complete");
    is_str(policy_request_get(&req, "sasl_username"), "svc-billing", "attribute value");
    is_str(policy_request_get(&req, "future_attribute"), "x=y",
	   "unknown attribute kept; value may contain '='");
    is_str(policy_request_get(&req, "ccert_subject"), "", "empty value");
    ok(policy_request_get(&req, "sender") == NULL, "absent attribute is NULL");

    policy_request_reset(&req);
    ok(policy_request_get(&req, "sasl_username") == NULL, "reset forgets attributes");
    is_str(policy_request_finish(&req), "empty request", "empty request refused");
    feed(&req, "protocol_state=RCPT");
    is_str(policy_request_finish(&req), "missing request= attribute", "request= required");
    policy_request_reset(&req);
    feed(&req, "request=junk");
    ok(strstr(policy_request_finish(&req), "unknown request type") != NULL,
       "unknown request type refused");

    policy_request_reset(&req);
    feed(&req, "request=smtpd_access_policy\nsender=first\nsender=second");
    is_str(policy_request_get(&req, "sender"), "first", "a repeated attribute: the first counts");

    policy_request_reset(&req);
    is_str(feed(&req, "no equals sign"), "malformed attribute: no '='", "line without '='");
    policy_request_reset(&req);
    is_str(feed(&req, "=value"), "malformed attribute: empty name", "empty name");
    policy_request_reset(&req);
    is_str(feed(&req, "bad name=value"), "malformed attribute: bad character in name",
	   "space in name");
    policy_request_reset(&req);
    is_str(policy_request_add_line(&req, "a=b\0c", 5),
	   "malformed attribute: control character in value", "NUL in value");
    policy_request_reset(&req);
    ok(policy_request_add_line(&req, "a=b\r", 4) == NULL, "a trailing CR is tolerated");
    is_str(policy_request_get(&req, "a"), "b", "and stripped");

    big = malloc(POLICY_LINE_MAX + 2);
    memset(big, 'x', POLICY_LINE_MAX + 1);
    memcpy(big, "a=", 2);
    policy_request_reset(&req);
    is_str(policy_request_add_line(&req, big, POLICY_LINE_MAX + 1), "attribute line too long",
	   "line over %d bytes refused", POLICY_LINE_MAX);
    policy_request_reset(&req);
    ok(policy_request_add_line(&req, big, POLICY_LINE_MAX) == NULL,
       "line of exactly %d bytes accepted", POLICY_LINE_MAX);
    free(big);

    policy_request_reset(&req);
    err = NULL;
    for (int i = 0; i <= POLICY_ATTR_MAX && err == NULL; i++) {
	char    line[32];

	snprintf(line, sizeof(line), "a%d=b", i);
	err = policy_request_add_line(&req, line, strlen(line));
    }
    is_str(err, "too many attributes", "more than %d attributes refused", POLICY_ATTR_MAX);

    policy_request_reset(&req);
    big = malloc(8000);
    memset(big, 'v', 8000);
    memcpy(big, "n=", 2);
    err = NULL;
    for (int i = 0; i < 20 && err == NULL; i++)
	err = policy_request_add_line(&req, big, 8000);
    is_str(err, "request too large", "more than %d bytes in one request refused",
	   POLICY_REQUEST_MAX);
    free(big);

    test_value_bytes(&req);
    test_name_bytes(&req);
    test_same_hash(&req);
    policy_request_free(&req);
    return (tap_done());
}
