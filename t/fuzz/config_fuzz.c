/* config_fuzz - libFuzzer target for common/config.c (the one configuration
 * format every daemon reads): any bytes either load or produce
 * "file:line: message" errors, never a crash; typed getters are
 * exercised on whatever loaded. */

#include "build_config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct config_spec specs[] = {
    {"listen", CONFIG_LIST, "inet:127.0.0.1:1", 0},
    {"flag", CONFIG_BOOL, "no", 0},
    {"count", CONFIG_INT, "1", 0},
    {"timeout", CONFIG_DURATION, "1s", 0},
    {"size", CONFIG_SIZE, "1k", 0},
    {"name", CONFIG_STRING, NULL, 0},
    {"limit", CONFIG_DIRECTIVE, NULL, CONFIG_REPEAT},
    {0},
};

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config *cfg = config_read_buffer("fuzz.conf", (const char *) data, size, specs);
    const struct config_entry *entry = NULL;
    int     n;
    char  **list;

    for (int i = 0; i < cfg->error_count; i++)
	if (strncmp(cfg->errors[i], "fuzz.conf:", 10) != 0)
	    abort();				/* every error names file:line */
    if (cfg->error_count == 0) {
	(void) config_get_bool(cfg, "flag");
	(void) config_get_int(cfg, "count");
	(void) config_get_duration(cfg, "timeout");
	(void) config_get_size(cfg, "size");
	list = config_split_list(config_get_str(cfg, "listen"), &n);
	config_list_free(&list);
	while ((entry = config_next(cfg, entry, "limit")) != NULL) {
	    list = config_split_words(entry->value, &n);
	    config_list_free(&list);
	}
    }
    config_free(&cfg);
    return (0);
}
