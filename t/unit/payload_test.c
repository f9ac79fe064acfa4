/* payload_test - unit tests for lmtp-webhook/payload.c */

#include "build_config.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "payload.h"
#include "tap.h"

static char *clean(const char *in, size_t len)
{
    static char out[256];
    size_t  n;
    char   *c = payload_utf8_clean(in, len, &n);

    memcpy(out, c, n + 1);
    free(c);
    return (out);
}

static json_t *build(struct payload_message *msg)
{
    struct payload_envelope env = {"msg_1", "acme", "a@b", "bills@acme.planapulse.app", 42};
    size_t  len;
    char   *text = payload_build(msg, &env, &len);
    json_t *j = json_loadb(text, len, 0, NULL);

    ok(j != NULL, "payload is valid JSON (%zu bytes)", len);
    free(text);
    return (j);
}

int     main(void)
{
    struct payload_message msg;
    struct payload_attachment *a;
    json_t *j;

    is_str(clean("plain", 5), "plain", "ASCII unchanged");
    is_str(clean("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\x84", 14), "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\x84",
	   "valid 2-, 3- and 4-byte sequences unchanged");
    is_str(clean("caf\xe9!", 5), "caf\xef\xbf\xbd!", "Latin-1 byte becomes U+FFFD");
    is_str(clean("\xc0\xaf", 2), "\xef\xbf\xbd\xef\xbf\xbd", "overlong '/' rejected");
    is_str(clean("\xed\xa0\x80", 3), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd",
	   "UTF-16 surrogate rejected");
    is_str(clean("\xf4\x90\x80\x80", 4), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd",
	   "beyond U+10FFFF rejected");
    is_str(clean("\xe2\x82", 2), "\xef\xbf\xbd\xef\xbf\xbd", "truncated sequence at the end");

    memset(&msg, 0, sizeof(msg));
    payload_bytes_append(&msg.header[PAYLOAD_SUBJECT], "Invoice \xff", 9, 65536);
    payload_bytes_append(&msg.text, "hello", 5, 3);
    msg.size = 1234;
    a = payload_attachment_add(&msg);
    a->filename = strdup("a.pdf");
    a->content_type = strdup("application/pdf");
    a->size = 3;
    a->content_kept = 1;
    payload_bytes_append(&a->content, "abc", 3, 100);
    a = payload_attachment_add(&msg);
    a->content_type = strdup("application/zip");
    a->size = 99999999;
    j = build(&msg);
    is_str(json_string_value(json_object_get(j, "type")), "message.received", "type");
    is_int(json_integer_value(json_object_get(j, "timestamp")), 42, "timestamp");
    {
	json_t *data = json_object_get(j, "data"), *headers = json_object_get(data, "headers");
	json_t *atts = json_object_get(data, "attachments");

	is_str(json_string_value(json_object_get(data, "workspace")), "acme", "workspace");
	is_str(json_string_value(json_object_get(headers, "subject")), "Invoice \xef\xbf\xbd",
	       "a non-UTF-8 header is cleaned, not dropped");
	ok(json_is_null(json_object_get(headers, "from")), "absent header is null");
	is_str(json_string_value(json_object_get(data, "text")), "hel",
	       "payload_bytes_append keeps to its limit");
	ok(json_is_null(json_object_get(data, "html")), "absent html is null");
	is_int(json_integer_value(json_object_get(data, "size")), 1234, "size");
	is_int((long long) json_array_size(atts), 2, "two attachments");
	is_str(json_string_value(json_object_get(json_array_get(atts, 0), "content_base64")),
	       "YWJj", "kept content in base64");
	is_str(json_string_value(json_object_get(json_array_get(atts, 0), "sha256")),
	       "0000000000000000000000000000000000000000000000000000000000000000",
	       "sha256 as 64 hex digits");
	ok(json_is_null(json_object_get(json_array_get(atts, 1), "content_base64")),
	   "an attachment over the limit is listed without content");
	ok(json_is_null(json_object_get(json_array_get(atts, 1), "filename")),
	   "no filename: null");
	is_int(json_integer_value(json_object_get(json_array_get(atts, 1), "size")), 99999999,
	       "but with its size");
	ok(json_is_array(json_object_get(data, "authentication_results")),
	   "authentication_results is an array, even empty");
    }
    json_decref(j);
    payload_message_free(&msg);
    ok(msg.attachments == NULL && msg.text.data == NULL, "payload_message_free resets");
    return (tap_done());
}
