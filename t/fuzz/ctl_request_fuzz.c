/* ctl_request_fuzz - libFuzzer target for policyd-ratelimit's control
 * requests (ctl_cmd.c) and quarantine lines (quarantine.c).
 *
 * The input's first line is a control request, the rest a configuration
 * with limits and quarantines. Checked: no memory error; a request is
 * accepted only when it names a command, has no NUL and fits
 * CTL_LINE_MAX; top N stays in 1..CTL_TOP_MAX; every quarantine loaded
 * names an existing, enforcing limit; the keys of an accepted request
 * fit the store's key size.
 */

#include "build_config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "quarantine.h"

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct config_spec specs[] = {
    {"limit", CONFIG_DIRECTIVE, NULL, CONFIG_REPEAT},
    {"override", CONFIG_DIRECTIVE, NULL, CONFIG_REPEAT},
    {"exempt", CONFIG_DIRECTIVE, NULL, CONFIG_REPEAT},
    {"quarantine", CONFIG_DIRECTIVE, NULL, CONFIG_REPEAT},
    {0},
};

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *) data;
    const char *nl = memchr(text, '\n', size);
    size_t  len = nl ? (size_t) (nl - text) : size;
    struct ctl_request req;
    struct config *cfg;
    struct limits limits;
    struct store_admin adm;
    const char *err = ctl_request_parse(text, len, &req);

    if (err == NULL && (memchr(text, 0, len) || len > CTL_LINE_MAX + 1))
	abort();
    if (err == NULL && req.verb == CTL_TOP && (req.top < 1 || req.top > CTL_TOP_MAX))
	abort();
    cfg = config_read_buffer("fuzz.conf", nl ? nl + 1 : "", nl ? size - len - 1 : 0, specs);
    ratelimit_load(&limits, cfg);
    for (int i = 0; i < limits.quarantine_count; i++) {
	const struct quarantine *q = limits.quarantine + i;

	if (q->when < 0 || q->when >= limits.limit_count || limits.limit[q->when].dry_run
	    || q->times < 1 || q->times > QUARANTINE_TIMES_MAX || q->window_ms < 1000)
	    abort();
    }
    if (err == NULL && req.value) {
	memset(&adm, 0, sizeof(adm));
	ctl_keys(&limits, req.value, CTL_KEYS_ALL, &adm);
	for (int i = 0; i < adm.count; i++)
	    if (strlen(adm.keys[i]) >= STORE_KEY_MAX + 64)
		abort();
	store_admin_clear(&adm);
    }
    ctl_request_free(&req);
    ratelimit_free(&limits);
    config_free(&cfg);
    return (0);
}
