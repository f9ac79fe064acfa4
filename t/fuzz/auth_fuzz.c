/* auth_fuzz - libFuzzer target for what milter-dkim's SPF and DMARC code
 * reads from outside: the dns_servers list (common/dns.c), the DMARC
 * record test, the SPF domain check, and alignment. Every input parses
 * or is refused; nothing crashes, nothing reads past the input. */

#include "build_config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dmarc.h"
#include "dns.h"
#include "spf.h"

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char   *text = malloc(size + 1);
    char   *half;

    memcpy(text, data, size);
    text[size] = 0;
    (void) dns_servers_check(text);
    (void) dmarc_is_record(text, size);
    (void) spf_domain_ok(text);
    half = text + strlen(text) / 2;
    (void) dmarc_aligned(NULL, text, half, 0);
    (void) dmarc_aligned(NULL, text, half, 1);
    free(text);
    return (0);
}
