#ifndef MXKIT_DMARC_H
#define MXKIT_DMARC_H

/* dmarc - RFC 7489 DMARC for one message: record, alignment, result. */

#include <libpsl.h>

#include "mdns.h"
#include "spf.h"

#define DMARC_RECORD_MAX	4096	/* longer: permerror, never truncated */

struct dmarc_sig {			/* one DKIM signature's outcome */
    const char *domain;			/* d= */
    const char *result;			/* pass, fail, temperror, ... */
};

struct dmarc_result {
    const char *result;			/* pass, fail, none, temperror, permerror */
    char    from_domain[256];		/* header.from ("" when none) */
    char    comment[640];		/* policy and alignment, for the A-R */
    int     policy;			/* 'n', 'q', 'r' for this From; 0 unknown */
    int     reject;			/* p=reject applies (pct sampled) */
    int     defer;			/* temperror where p=reject may apply */
};

void    dmarc_check(struct mdns *dns, const psl_ctx_t *psl, const char *from_domain,
		            const struct dmarc_sig *sigs, int nsigs,
		            const struct spf_result *spf, struct dmarc_result *out);
const char *dmarc_org_domain(const psl_ctx_t *psl, const char *domain);
int     dmarc_aligned(const psl_ctx_t *psl, const char *a, const char *b, int strict);
int     dmarc_is_record(const char *text, size_t len);

#endif
