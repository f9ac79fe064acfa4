/* webhook_route_fuzz - libFuzzer target for lmtp-webhook/route.c: the
 * input is "SETTING\nADDRESS". A setting is accepted or refused; an
 * accepted route matches or not; a match gives a URL that starts with
 * the template's scheme and a workspace of capture characters only. */

#include "build_config.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "route.h"

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char   *text = malloc(size + 1), *address, *url, *ws;
    struct webhook_route route;

    memcpy(text, data, size);
    text[size] = 0;
    if ((address = strchr(text, '\n')) != NULL)
	*address++ = 0;
    else
	address = "bills@acme.planapulse.app";
    if (route_parse(text, &route) == NULL) {
	if (route_match(&route, address, &url, &ws)) {
	    if (strncmp(url, route.url, 4) != 0)
		abort();
	    for (const char *p = ws; ws && *p; p++)
		if (!(isalnum((unsigned char) *p) || *p == '-' || *p == '_') || isupper((unsigned char) *p))
		    abort();			/* only lower-case capture characters */
	    free(url);
	    free(ws);
	    char   *before[ROUTE_MAX_SECRETS] = {0};

	    for (int i = 0; i < route.secret_count; i++)
		before[i] = strdup(route.secret_files[i]);
	    if (!route_expand_secrets(&route, address))
		abort();			/* it matched: it expands */
	    for (int i = 0; i < route.secret_count; i++) {
		/* {N} gone; a path without one unchanged; a capture adds no
		   '/' or '.' (no path syntax) */
		if (strchr(route.secret_files[i], '{') != NULL
		    || (strchr(before[i], '{') == NULL && strcmp(before[i], route.secret_files[i]))
		    || strspn(route.secret_files[i], "/") != strspn(before[i], "/"))
		    abort();
		size_t  slashes = 0, dots = 0, s0 = 0, d0 = 0;

		for (const char *p = route.secret_files[i]; *p; p++)
		    slashes += *p == '/', dots += *p == '.';
		for (const char *p = before[i]; *p; p++)
		    s0 += *p == '/', d0 += *p == '.';
		if (slashes != s0 || dots != d0)
		    abort();
		free(before[i]);
	    }
	}
	route_free(&route);
    }
    free(text);
    return (0);
}
