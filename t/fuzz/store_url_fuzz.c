/* store_url_fuzz - libFuzzer target for policyd-ratelimit/store_url.c
 *
 * The input is a "store" value (redis://, redis+unix://,
 * redis-sentinel://), parsed as is and as the URL of a store whose
 * password is in a file. Checked: no memory error (ASan/UBSan); a
 * refusal keeps nothing; an accepted URL has its ports, database and
 * Sentinel count in range, and a printable form with the password
 * masked: "***" there, and a password with a space (which no host,
 * port or master name may have) nowhere after its last '@'.
 */

#include "build_config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void store_url_fuzz_check(const char *text, const struct store_url *url,
				         const char *err)
{
    static const struct store_url zero;
    const char *at;

    if (err) {
	if (memcmp(url, &zero, sizeof(zero)) != 0)
	    abort();				/* half-parsed secret kept */
	return;
    }
    if (url->redis && !url->path[0] && !url->sentinel && (url->port < 1 || url->port > 65535))
	abort();
    if (url->db < 0 || url->db > 15 || url->nsentinels < 0
	|| url->nsentinels > STORE_SENTINELS_MAX || (url->sentinel && url->nsentinels == 0))
	abort();
    for (int i = 0; i < url->nsentinels; i++)
	if (url->sentinels[i].port < 1 || url->sentinels[i].port > 65535)
	    abort();
    if (url->password[0] && strstr(url->text, ":***@") == NULL)
	abort();				/* a password, not masked */
    /*
     * No host, port, master name or database has a space, so a password
     * with one seen after the last '@' of the printed form was leaked
     * there. (The whole form is not searched: "// " of the scheme, or a
     * user name, may hold such a password's bytes without any leak.)
     */
    if (strchr(url->password, ' ') && (at = strrchr(url->text, '@')) != NULL
	&& strstr(at, url->password) != NULL)
	abort();				/* the password printed */
}

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char   *text = malloc(size + 1);
    struct store_url *url = malloc(sizeof(*url));

    memcpy(text, data, size);
    text[size] = 0;
    store_url_fuzz_check(text, url, store_url_parse(text, url));
    store_url_fuzz_check(text, url, store_url_parse_file(text, url));
    free(url);
    free(text);
    return (0);
}
