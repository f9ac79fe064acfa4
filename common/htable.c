/*
 * NAME
 *	htable 3
 * SUMMARY
 *	string-keyed hash table
 * SYNOPSIS
 *	#include "htable.h"
 *
 *	struct htable *htable_create(size_hint)
 *	void	*htable_find(table, key)
 *	void	**htable_slot(table, key, &created)
 *	int	htable_delete(table, key, free_value)
 *	size_t	htable_sweep(table, budget, expired, context, free_value)
 *	void	htable_destroy(&table, free_value)
 * DESCRIPTION
 *	Keys are often chosen by strangers (client addresses, sender
 *	domains), so buckets are picked with SipHash-2-4 under a random
 *	per-table key: nobody can precompute colliding keys.
 *
 *	htable_slot() returns the address of the value for key, creating
 *	an entry with a NULL value when there is none (*created = 1).
 *
 *	htable_sweep() visits at most budget buckets, continuing where
 *	the previous sweep stopped, and deletes entries for which
 *	expired() returns true: expiry costs O(1) per event-loop tick.
 * DIAGNOSTICS
 *	Allocation failure is fatal (xalloc).
 */

#include "build_config.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "htable.h"
#include "xalloc.h"

#define ROTL(x, b) (uint64_t) (((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND \
    do { \
	v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32); \
	v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2; \
	v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0; \
	v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32); \
    } while (0)

uint64_t htable_siphash(const uint64_t key[2], const void *data, size_t len)
{
    const unsigned char *in = data;
    uint64_t v0 = 0x736f6d6570736575ULL ^ key[0];
    uint64_t v1 = 0x646f72616e646f6dULL ^ key[1];
    uint64_t v2 = 0x6c7967656e657261ULL ^ key[0];
    uint64_t v3 = 0x7465646279746573ULL ^ key[1];
    uint64_t b = (uint64_t) len << 56;
    uint64_t m;
    size_t  i, tail = len & 7;

    for (i = 0; i + 8 <= len; i += 8) {
	memcpy(&m, in + i, 8);		/* little-endian hosts only (x86, arm) */
	v3 ^= m;
	SIPROUND;
	SIPROUND;
	v0 ^= m;
    }
    for (size_t j = 0; j < tail; j++)
	b |= (uint64_t) in[i + j] << (8 * j);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return (v0 ^ v1 ^ v2 ^ v3);
}

struct htable *htable_create(size_t size_hint)
{
    struct htable *table = xcalloc(1, sizeof(*table));

    table->size = 16;
    while (table->size < size_hint)
	table->size <<= 1;
    table->buckets = xcalloc(table->size, sizeof(*table->buckets));
    if (getrandom(table->seed, sizeof(table->seed), 0) != sizeof(table->seed)) {
	table->seed[0] = (uint64_t) (uintptr_t) table;
	table->seed[1] = (uint64_t) (uintptr_t) & table;
    }
    return (table);
}

static uint64_t htable_hash(const struct htable *table, const char *key)
{
    return (htable_siphash(table->seed, key, strlen(key)));
}

static void htable_grow(struct htable *table)
{
    size_t  new_size = table->size * 2;
    struct htable_entry **buckets = xcalloc(new_size, sizeof(*buckets));
    struct htable_entry *entry, *next;

    for (size_t i = 0; i < table->size; i++) {
	for (entry = table->buckets[i]; entry; entry = next) {
	    next = entry->next;
	    entry->next = buckets[entry->hash & (new_size - 1)];
	    buckets[entry->hash & (new_size - 1)] = entry;
	}
    }
    free(table->buckets);
    table->buckets = buckets;
    table->size = new_size;
    table->sweep_pos = 0;
}

void   *htable_find(const struct htable *table, const char *key)
{
    uint64_t hash = htable_hash(table, key);
    struct htable_entry *entry = table->buckets[hash & (table->size - 1)];

    for (; entry; entry = entry->next)
	if (entry->hash == hash && strcmp(entry->key, key) == 0)
	    return (entry->value);
    return (NULL);
}

void  **htable_slot(struct htable *table, const char *key, int *created)
{
    uint64_t hash = htable_hash(table, key);
    struct htable_entry **head = &table->buckets[hash & (table->size - 1)];
    struct htable_entry *entry;

    for (entry = *head; entry; entry = entry->next) {
	if (entry->hash == hash && strcmp(entry->key, key) == 0) {
	    *created = 0;
	    return (&entry->value);
	}
    }
    if (table->used >= table->size) {
	htable_grow(table);
	head = &table->buckets[hash & (table->size - 1)];
    }
    entry = xmalloc(sizeof(*entry));
    entry->key = xstrdup(key);
    entry->value = NULL;
    entry->hash = hash;
    entry->next = *head;
    *head = entry;
    table->used++;
    *created = 1;
    return (&entry->value);
}

static void htable_unlink(struct htable *table, struct htable_entry **link,
			          void (*free_value)(void *))
{
    struct htable_entry *entry = *link;

    *link = entry->next;
    if (free_value)
	free_value(entry->value);
    free(entry->key);
    free(entry);
    table->used--;
}

int     htable_delete(struct htable *table, const char *key, void (*free_value)(void *))
{
    uint64_t hash = htable_hash(table, key);
    struct htable_entry **link = &table->buckets[hash & (table->size - 1)];

    for (; *link; link = &(*link)->next) {
	if ((*link)->hash == hash && strcmp((*link)->key, key) == 0) {
	    htable_unlink(table, link, free_value);
	    return (1);
	}
    }
    return (0);
}

size_t  htable_sweep(struct htable *table, size_t budget,
		             int (*expired)(void *value, void *context), void *context,
		             void (*free_value)(void *))
{
    size_t  removed = 0;

    for (size_t n = 0; n < budget && n < table->size; n++) {
	struct htable_entry **link = &table->buckets[table->sweep_pos];

	while (*link) {
	    if (expired((*link)->value, context)) {
		htable_unlink(table, link, free_value);
		removed++;
	    } else {
		link = &(*link)->next;
	    }
	}
	table->sweep_pos = (table->sweep_pos + 1) & (table->size - 1);
    }
    return (removed);
}

void    htable_destroy(struct htable **tablep, void (*free_value)(void *))
{
    struct htable *table = *tablep;

    if (table == NULL)
	return;
    for (size_t i = 0; i < table->size; i++)
	while (table->buckets[i])
	    htable_unlink(table, &table->buckets[i], free_value);
    free(table->buckets);
    free(table);
    *tablep = NULL;
}
