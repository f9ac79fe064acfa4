/* htable_test - unit tests for common/htable.c */

#include "build_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "htable.h"
#include "tap.h"

static int is_odd(void *value, void *context)
{
    return ((int) (long) value & 1);
}

int     main(void)
{
    struct htable *table = htable_create(0);
    char    key[32];
    int     created, wrong = 0;
    void  **slot;
    /* SipHash-2-4 reference vector: key 00..0f, message 00..0e. */
    uint64_t k[2] = {0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL};
    unsigned char msg[15];

    for (int i = 0; i < 15; i++)
	msg[i] = i;
    is_int((long long) htable_siphash(k, msg, 15), (long long) 0xa129ca6149be45e5ULL,
	   "SipHash-2-4 matches the reference vector");
    for (long i = 1; i <= 10000; i++) {
	snprintf(key, sizeof(key), "key-%ld", i);
	slot = htable_slot(table, key, &created);
	if (!created)
	    wrong++;
	*slot = (void *) i;
    }
    is_int(wrong, 0, "10,000 new keys created");
    is_int(table->used, 10000, "used count");
    ok(table->size >= 10000, "table grew (%zu buckets)", table->size);
    for (long i = 1; i <= 10000; i++) {
	snprintf(key, sizeof(key), "key-%ld", i);
	if (htable_find(table, key) != (void *) i)
	    wrong++;
    }
    is_int(wrong, 0, "every key found with its value");
    slot = htable_slot(table, "key-5", &created);
    ok(!created && *slot == (void *) 5, "existing slot returned");
    ok(htable_find(table, "absent") == NULL, "absent key not found");
    ok(htable_delete(table, "key-7", NULL) && !htable_find(table, "key-7"), "delete");
    ok(!htable_delete(table, "key-7", NULL), "delete twice fails");
    htable_sweep(table, table->size, is_odd, NULL, NULL);
    is_int(table->used, 5000, "sweep removed the odd values (key-7 already gone)");
    ok(htable_find(table, "key-8") && !htable_find(table, "key-9"), "sweep kept the even ones");
    htable_destroy(&table, NULL);
    ok(table == NULL, "destroy sets NULL");
    return (tap_done());
}
