/* webhook_spool_fuzz - libFuzzer target for lmtp-webhook/spool_read.c's
 * spool_load(): the input is the file active/msg_fuzz of a spool. It
 * loads or is refused with EBADMSG (never another error, never a crash);
 * a loaded event has the file's name as its id and its body is the
 * file's bytes after the header line; stored again by spool_store() and
 * loaded back, every field and every body byte is the same. */

#include "build_config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spool.h"

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same(const char *a, const char *b)
{
    return ((a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0));
}

static void check_round_trip(const char *dir, const char *path, const struct spool_event *ev)
{
    struct spool_event back;

    if (spool_store(dir, SPOOL_ACTIVE, ev) != NULL)
	abort();				/* a loaded event always stores */
    if (spool_load(path, &back) != NULL)
	abort();
    if (!same(back.id, ev->id) || !same(back.url, ev->url) || !same(back.last_error, ev->last_error)
	|| back.created != ev->created || back.attempts != ev->attempts
	|| back.next_attempt != ev->next_attempt || back.body_len != ev->body_len
	|| memcmp(back.body, ev->body, ev->body_len) != 0 || back.secret_count != ev->secret_count)
	abort();
    for (int i = 0; i < ev->secret_count; i++)
	if (!same(back.secret_files[i], ev->secret_files[i]))
	    abort();
    spool_event_free(&back);
}

int     LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char dir[] = "/tmp/webhook-spool-fuzz.XXXXXX";
    static int made;
    struct spool_event ev;
    char   *path;
    const char *nl;
    FILE   *f;

    if (!made && (mkdtemp(dir) == NULL || spool_init(dir) != NULL))
	abort();
    made = 1;
    path = spool_path(dir, SPOOL_ACTIVE, "msg_fuzz");
    if ((f = fopen(path, "w")) == NULL || fwrite(data, 1, size, f) != size || fclose(f) != 0)
	abort();
    errno = 0;
    if (spool_load(path, &ev) != NULL) {
	if (errno != EBADMSG)
	    abort();				/* a readable regular file */
    } else {
	nl = memchr(data, '\n', size);
	if (strcmp(ev.id, "msg_fuzz") != 0 || nl == NULL
	    || ev.body_len != size - (size_t) (nl + 1 - (const char *) data)
	    || memcmp(ev.body, nl + 1, ev.body_len) != 0)
	    abort();
	check_round_trip(dir, path, &ev);
	spool_event_free(&ev);
    }
    unlink(path);
    free(path);
    return (0);
}
