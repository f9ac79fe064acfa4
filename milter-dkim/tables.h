#ifndef MXKIT_TABLES_H
#define MXKIT_TABLES_H

/* tables - OpenDKIM KeyTable and SigningTable, and the sender_binding table. */

#include "config.h"

struct key_entry {
    char   *name;			/* KeyTable key name */
    char   *domain;			/* may contain '%' */
    char   *selector;
    char   *path;
    int     line;
};

struct signing_entry {
    char   *pattern;			/* "*@example.com", "example.com", ... */
    char  **keys;			/* key names, NULL terminated */
    int     line;
};

struct binding_entry {
    char   *user;
    char  **patterns;			/* NULL terminated */
};

struct tables {
    struct key_entry *key;
    int     key_count;
    struct signing_entry *sign;
    int     sign_count;
    struct binding_entry *bind;
    int     bind_count;
};

const char *tables_strip_prefix(const char *path);
int     tables_dns_name(const char *name, int percent);
void    tables_parse_keys(struct tables *t, struct config *errors, const char *name,
			          const char *text);
void    tables_parse_signing(struct tables *t, struct config *errors, const char *name,
			             const char *text);
void    tables_parse_binding(struct tables *t, struct config *errors, const char *name,
			             const char *text);
const struct key_entry *tables_find_key(const struct tables *t, const char *name);
int     tables_match(const char *pattern, const char *address);
int     tables_signers(const struct tables *t, const char *address,
		               const struct key_entry **out, int max);
int     tables_aligned(const char *domain, const char *key_domain);
int     tables_template_makes(const char *template, const char *domain);
int     tables_pattern_aligned(const char *pattern, const char *key_domain);
int     tables_bound(const struct tables *t, const char *user);
int     tables_binding_allows(const struct tables *t, const char *user, const char *address,
			              int *bound);
void    tables_free(struct tables *t);

#endif
