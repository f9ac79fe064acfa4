#ifndef MXKIT_HTABLE_H
#define MXKIT_HTABLE_H

/* htable - string-keyed hash table with a per-table random seed. */

#include <stddef.h>
#include <stdint.h>

struct htable_entry {
    char   *key;
    void   *value;
    uint64_t hash;
    struct htable_entry *next;
};

struct htable {
    struct htable_entry **buckets;
    size_t  size;			/* power of two */
    size_t  used;
    uint64_t seed[2];
    size_t  sweep_pos;
};

struct htable *htable_create(size_t size_hint);
void   *htable_find(const struct htable *table, const char *key);
void  **htable_slot(struct htable *table, const char *key, int *created);
int     htable_delete(struct htable *table, const char *key, void (*free_value)(void *));
size_t  htable_sweep(struct htable *table, size_t budget,
		             int (*expired)(void *value, void *context), void *context,
		             void (*free_value)(void *));
void    htable_destroy(struct htable **table, void (*free_value)(void *));
uint64_t htable_siphash(const uint64_t key[2], const void *data, size_t len);

#endif
