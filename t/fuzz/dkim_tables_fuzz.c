/* dkim_tables_fuzz - libFuzzer target for milter-dkim/tables.c: the
 * KeyTable, SigningTable and sender_binding parsers (the same bytes are
 * read as each), the From: address parser, and lookups on whatever
 * parsed. Checked: no memory error; every reported error names file:line. */

#include "build_config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "message.h"
#include "tables.h"

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct config_spec no_specs[] = {{0}};

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char   *text = malloc(size + 1), addr[512];
    struct config *errors = config_read_buffer("fuzz", "", 0, no_specs);
    struct tables t;
    const struct key_entry *keys[8];
    int     bound;

    memcpy(text, data, size);
    text[size] = 0;
    memset(&t, 0, sizeof(t));
    tables_parse_keys(&t, errors, "key.table", text);
    tables_parse_signing(&t, errors, "signing.table", text);
    tables_parse_binding(&t, errors, "binding", text);
    for (int i = 0; i < errors->error_count; i++)
	if (strchr(errors->errors[i], ':') == NULL)
	    abort();
    (void) tables_signers(&t, "user@example.com", keys, 8);
    (void) tables_binding_allows(&t, "svc-billing", "noreply@planapulse.ai", &bound);
    if (message_parse_address(text, addr, sizeof(addr)) == NULL && strchr(addr, '@') == NULL)
	abort();				/* an accepted address has an '@' */
    (void) tables_match(text, "noreply@planapulse.ai");
    tables_free(&t);
    config_free(&errors);
    free(text);
    return (0);
}
