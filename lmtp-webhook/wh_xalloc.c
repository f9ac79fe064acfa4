/*
 * NAME
 *	wh_xalloc 3
 * SUMMARY
 *	xmalloc() and xstrdup() for milter-dkim's rfc5322.c in the plugin
 * DESCRIPTION
 *	rfc5322.c, shared with milter-dkim (authres.c reads the same RFC
 *	8601 ids), allocates with common/'s xalloc, which logs through
 *	common/'s msg.c: not something to load into Dovecot's lmtp. Inside
 *	the plugin these two are wh_alloc's (abort when memory runs out:
 *	the LMTP connection drops, Postfix retries). Local to the plugin,
 *	which exports only lmtp_webhook_plugin_*.
 */

#include "wh_alloc.h"
#include "xalloc.h"

void   *xmalloc(size_t size)
{
    return (wh_malloc(size));
}

char   *xstrdup(const char *text)
{
    return (wh_strdup(text));
}
