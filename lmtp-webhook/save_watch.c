/*
 * NAME
 *	save_watch 3
 * SUMMARY
 *	did this delivery save the mail anywhere? (Sieve saves too)
 * SYNOPSIS
 *	#include "save_watch.h"
 *
 *	void	save_watch_init(module)
 *	void	save_watch_deinit()
 *	void	save_watch_start()
 *	unsigned save_watch_saves()
 *	unsigned save_watch_stop()
 * DESCRIPTION
 *	The plugin commits a recipient's event only when its mail was
 *	saved. Dovecot's mail_deliver_save() says so in the delivery
 *	context (saved_mail), but Pigeonhole's Sieve stores a message
 *	through mailbox transactions of its own and never sets it: with
 *	Sieve loaded, every "fileinto", a "keep" of a global sieve_before
 *	script, even the implicit keep after a script error, left the
 *	mail in its mailbox with a 250 and no event.
 *
 *	So the saves are counted where every storage path ends: each
 *	mailbox the lmtp process allocates gets a transaction_commit that
 *	adds the transaction's saved and copied mails (save_count) to the
 *	count once the commit succeeded. save_watch_start() sets the
 *	count to 0 and starts counting (one delivery at a time: an lmtp
 *	process delivers to one recipient at once), save_watch_saves()
 *	returns it so far, save_watch_stop() stops and returns it. Commits outside a delivery are not counted.
 * SEE ALSO
 *	mail-storage-hooks.h, Dovecot's quota plugin (the same wrapping)
 */

#include "lib.h"
#include "module-context.h"
#include "mail-storage-private.h"
#include "mail-storage-hooks.h"

#include "save_watch.h"

#define SAVE_WATCH_CONTEXT(obj) MODULE_CONTEXT(obj, save_watch_storage_module)

static MODULE_CONTEXT_DEFINE_INIT(save_watch_storage_module, &mail_storage_module_register);

static bool save_watch_on;
static unsigned save_watch_count;

static int save_watch_commit(struct mailbox_transaction_context *t,
			             struct mail_transaction_commit_changes *changes_r)
{
    union mailbox_module_context *mbox = SAVE_WATCH_CONTEXT(t->box);
    unsigned saves = t->save_count;		/* t is gone after the commit */
    int     ret = mbox->super.transaction_commit(t, changes_r);

    if (ret == 0 && save_watch_on)
	save_watch_count += saves;
    return (ret);
}

static void save_watch_mailbox_allocated(struct mailbox *box)
{
    struct mailbox_vfuncs *v = box->vlast;
    union mailbox_module_context *mbox = p_new(box->pool, union mailbox_module_context, 1);

    mbox->super = *v;
    box->vlast = &mbox->super;
    v->transaction_commit = save_watch_commit;
    MODULE_CONTEXT_SET_SELF(box, save_watch_storage_module, mbox);
}

static struct mail_storage_hooks save_watch_hooks = {
    .mailbox_allocated = save_watch_mailbox_allocated,
};

void    save_watch_init(struct module *module)
{
    mail_storage_hooks_add(module, &save_watch_hooks);
}

void    save_watch_deinit(void)
{
    mail_storage_hooks_remove(&save_watch_hooks);
}

void    save_watch_start(void)
{
    save_watch_count = 0;
    save_watch_on = TRUE;
}

unsigned save_watch_saves(void)
{
    return (save_watch_count);
}

unsigned save_watch_stop(void)
{
    save_watch_on = FALSE;
    return (save_watch_count);
}
