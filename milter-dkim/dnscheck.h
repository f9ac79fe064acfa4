#ifndef MXKIT_DNSCHECK_H
#define MXKIT_DNSCHECK_H

/* dnscheck - is each KeyTable key published in DNS? */

#include <stddef.h>

#include "config.h"
#include "dnskey.h"
#include "tables.h"

struct dnscheck;

struct dnscheck *dnscheck_open(const struct config *cfg, const char **err);
int     dnscheck_row(struct dnscheck *check, const char *domain, const char *selector,
		             const struct dnskey *key, char *why, size_t whylen);
int     dnscheck_tables(const struct config *cfg, const struct tables *t,
			        const char *table);
const char *dnscheck_label(const struct key_entry *k);
void    dnscheck_close(struct dnscheck **check);

#endif
