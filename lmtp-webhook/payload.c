/*
 * NAME
 *	payload 3
 * SUMMARY
 *	the message.received JSON event
 * SYNOPSIS
 *	#include "payload.h"
 *
 *	char	*payload_build(&msg, &envelope, &len)
 *	char	*payload_utf8_clean(data, len, &len_out)
 *	void	payload_bytes_append(&bytes, data, len, limit)
 *	struct payload_attachment *payload_attachment_add(&msg)
 *	void	payload_message_free(&msg)
 * DESCRIPTION
 *	The plugin fills a payload_message from Dovecot's MIME parser;
 *	payload_build() turns it into the JSON body that is signed and
 *	posted (compact, keys in a fixed order, malloc()ed):
 *
 *	{"type":"message.received","timestamp":T,"data":{"id",
 *	"workspace","envelope":{"mail_from","rcpt_to"},"headers":{"from",
 *	"to","cc","subject","date","message_id"},"authentication_results",
 *	"text","html","attachments":[{"filename","content_type","size",
 *	"sha256","content_base64"}],"size"}}
 *
 *	Absent headers and bodies are null. JSON strings must be UTF-8;
 *	Dovecot's decoder converts what it can, and payload_utf8_clean()
 *	replaces whatever is still not UTF-8 (an unknown charset, a
 *	broken sequence) with U+FFFD, so a hostile message still yields
 *	an event.
 * DIAGNOSTICS
 *	None: every input gives a payload.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "payload.h"
#include "sign.h"
#include "wh_alloc.h"

static const char *const payload_header_names[PAYLOAD_HEADER_COUNT] = {
    "from", "to", "cc", "subject", "date", "message_id",
};

const char *payload_header_name(enum payload_header which)
{
    return (payload_header_names[which]);
}

/* payload_bytes_append - append up to limit bytes in total */

void    payload_bytes_append(struct payload_bytes *b, const void *data, size_t len,
			             size_t limit)
{
    if (b->len >= limit)
	return;
    if (len > limit - b->len)
	len = limit - b->len;
    b->data = wh_realloc(b->data, b->len + len + 1);
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = 0;
}

struct payload_attachment *payload_attachment_add(struct payload_message *msg)
{
    struct payload_attachment *a;

    msg->attachments = wh_realloc(msg->attachments,
			(msg->attachment_count + 1) * sizeof(*msg->attachments));
    a = &msg->attachments[msg->attachment_count++];
    memset(a, 0, sizeof(*a));
    return (a);
}

/* payload_utf8_len - length of the valid UTF-8 sequence at s, or 0 */

static size_t payload_utf8_len(const unsigned char *s, size_t left)
{
    uint32_t cp;
    size_t  n;

    if (s[0] < 0x80)
	return (1);
    if (s[0] >= 0xC2 && s[0] <= 0xDF)
	n = 2, cp = s[0] & 0x1F;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF)
	n = 3, cp = s[0] & 0x0F;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4)
	n = 4, cp = s[0] & 0x07;
    else
	return (0);
    if (n > left)
	return (0);
    for (size_t i = 1; i < n; i++) {
	if ((s[i] & 0xC0) != 0x80)
	    return (0);
	cp = cp << 6 | (s[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF))
	|| (cp >= 0xD800 && cp <= 0xDFFF))
	return (0);				/* overlong, too big, surrogate */
    return (n);
}

char   *payload_utf8_clean(const char *data, size_t len, size_t *len_r)
{
    const unsigned char *s = (const unsigned char *) data;
    char   *out = wh_malloc(len * 3 + 1), *o = out;
    size_t  i = 0, n;

    while (i < len) {
	if ((n = payload_utf8_len(s + i, len - i)) == 0) {
	    memcpy(o, "\xEF\xBF\xBD", 3);	/* U+FFFD */
	    o += 3;
	    i++;
	} else {
	    memcpy(o, s + i, n);
	    o += n;
	    i += n;
	}
    }
    *o = 0;
    *len_r = o - out;
    return (out);
}

/* payload_string - a JSON string from any bytes, or null */

static json_t *payload_string(const char *data, size_t len, int present)
{
    json_t *j;
    char   *clean;
    size_t  clean_len;

    if (!present)
	return (json_null());
    clean = payload_utf8_clean(data ? data : "", len, &clean_len);
    j = json_stringn_nocheck(clean, clean_len);
    free(clean);
    return (j);
}

static json_t *payload_bytes_json(const struct payload_bytes *b)
{
    return (payload_string(b->data, b->len, b->data != NULL));
}

static json_t *payload_attachment_json(const struct payload_attachment *a)
{
    char    hex[65];
    json_t *j = json_object();

    for (int i = 0; i < 32; i++)
	snprintf(hex + 2 * i, 3, "%02x", a->sha256[i]);
    json_object_set_new(j, "filename", payload_string(a->filename,
			  a->filename ? strlen(a->filename) : 0, a->filename != NULL));
    json_object_set_new(j, "content_type", payload_string(a->content_type,
						  a->content_type ? strlen(a->content_type) : 0, 1));
    json_object_set_new(j, "size", json_integer((json_int_t) a->size));
    json_object_set_new(j, "sha256", json_string(hex));
    if (a->content_kept) {
	char   *b64 = sign_base64((const unsigned char *) a->content.data, a->content.len);

	json_object_set_new(j, "content_base64", json_string_nocheck(b64));
	free(b64);
    } else {
	json_object_set_new(j, "content_base64", json_null());
    }
    return (j);
}

static json_t *payload_data(const struct payload_message *msg,
			            const struct payload_envelope *env)
{
    json_t *data = json_object(), *envelope = json_object(), *headers = json_object();
    json_t *auth = json_array(), *atts = json_array();

#define STR(s) payload_string((s), (s) ? strlen(s) : 0, (s) != NULL)
    json_object_set_new(data, "id", STR(env->id));
    json_object_set_new(data, "workspace", STR(env->workspace));
    json_object_set_new(envelope, "mail_from", STR(env->mail_from));
    json_object_set_new(envelope, "rcpt_to", STR(env->rcpt_to));
#undef STR
    json_object_set_new(data, "envelope", envelope);
    for (int i = 0; i < PAYLOAD_HEADER_COUNT; i++)
	json_object_set_new(headers, payload_header_names[i],
			    payload_bytes_json(&msg->header[i]));
    json_object_set_new(data, "headers", headers);
    for (int i = 0; i < msg->auth_count; i++)
	json_array_append_new(auth, payload_bytes_json(&msg->auth_results[i]));
    json_object_set_new(data, "authentication_results", auth);
    json_object_set_new(data, "text", payload_bytes_json(&msg->text));
    json_object_set_new(data, "html", payload_bytes_json(&msg->html));
    for (int i = 0; i < msg->attachment_count; i++)
	json_array_append_new(atts, payload_attachment_json(&msg->attachments[i]));
    json_object_set_new(data, "attachments", atts);
    json_object_set_new(data, "size", json_integer((json_int_t) msg->size));
    return (data);
}

char   *payload_build(const struct payload_message *msg,
		              const struct payload_envelope *env, size_t *len_r)
{
    json_t *event = json_object();
    char   *text;

    json_object_set_new(event, "type", json_string("message.received"));
    json_object_set_new(event, "timestamp", json_integer(env->timestamp));
    json_object_set_new(event, "data", payload_data(msg, env));
    if ((text = json_dumps(event, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL)
	abort();				/* only on out of memory */
    json_decref(event);
    *len_r = strlen(text);
    return (text);
}

static void payload_bytes_free(struct payload_bytes *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
}

void    payload_message_free(struct payload_message *msg)
{
    for (int i = 0; i < PAYLOAD_HEADER_COUNT; i++)
	payload_bytes_free(&msg->header[i]);
    for (int i = 0; i < msg->auth_count; i++)
	payload_bytes_free(&msg->auth_results[i]);
    free(msg->auth_results);
    payload_bytes_free(&msg->text);
    payload_bytes_free(&msg->html);
    for (int i = 0; i < msg->attachment_count; i++) {
	free(msg->attachments[i].filename);
	free(msg->attachments[i].content_type);
	payload_bytes_free(&msg->attachments[i].content);
    }
    free(msg->attachments);
    memset(msg, 0, sizeof(*msg));
}
