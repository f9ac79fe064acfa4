#ifndef MXKIT_POLICY_H
#define MXKIT_POLICY_H

/* policy - one loaded generation of configuration, tables and keys. */

#include <sys/types.h>

#include <opendkim/dkim.h>

#include "cidr_list.h"
#include "config.h"
#include "keys.h"
#include "tables.h"

struct auth_conf;

struct dkim_policy {
    int     refcount;			/* under policy_lock */
    struct config *cfg;
    DKIM_LIB *lib;
    struct tables tables;
    struct dkim_key *keys;		/* parallel to tables.key */
    struct cidr_list *internal;
    int     sign;
    int     verify;
    int     sign_authenticated;
    int     binding_reject;		/* else: pass unsigned */
    dkim_canon_t header_canon;
    dkim_canon_t body_canon;
    long    signature_ttl;		/* seconds; 0: no x= */
    const char *authserv_id;
    const char *socket_path;		/* UNIX socket, or NULL */
    int     socket_local;
    mode_t  socket_umask;
    int     verify_max;			/* signatures verified per message */
    int     max_sessions;		/* milter sessions served at once */
    char  **sign_headers;		/* must outlive lib */
    char  **oversign_headers;
    struct auth_conf *auth;		/* SPF, DMARC and the DNS (auth.c) */
    int     unaligned_said;		/* an unaligned d= was logged (atomic) */
};

extern const struct config_spec policy_specs[];

struct dkim_policy *policy_load(const char *path);
void    policy_install(struct dkim_policy *policy);
struct dkim_policy *policy_acquire(void);
void    policy_release(struct dkim_policy **policy);
const struct dkim_key *policy_key(const struct dkim_policy *policy,
				          const struct key_entry *entry);

#endif
