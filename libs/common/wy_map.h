/* wy_map — a hash map owned by one thread (the loop): byte-string or uint64
 * keys to void * values, with a per-map secret hash seed, an optional bound on
 * the number of entries, and iteration that may delete as it goes.
 *
 * Design (why it looks like this):
 * - Keys are copied into the map (up to 16 bytes inline in the slot, longer
 *   ones in one allocation), so a caller never keeps a key alive for the map.
 *   A uint64 key is the 8 bytes of the integer: the _u64 calls are the byte
 *   calls on &key, so one table type covers both and they may even be mixed.
 * - Values are plain void * (not intrusive entries): the maps of the services
 *   index things that already live in lists or arrays (sessions by id and by
 *   account, ring slots), and one thing is often in several maps at once. The
 *   map never frees a value.
 * - Open addressing with linear probing over a power-of-two slot array; each
 *   slot keeps the full 64-bit hash, so probes compare hashes before keys and
 *   growing never rehashes a key. Deletion leaves a tombstone (so iterators and
 *   probe chains stay valid); tombstones are dropped when the table is rebuilt.
 *   The table doubles when live entries would pass half of the slots, and is
 *   rebuilt at the same size when tombstones fill it; it never shrinks.
 * - Keys such as nicknames and session ids come from players, so the hash is
 *   SipHash-1-3 keyed with 128 random bits per map (wy_random): a client cannot
 *   choose keys that collide.
 *
 * Not thread-safe: a map has one owner thread. */
#ifndef WY_MAP_H
#define WY_MAP_H

#include "wy_core.h"

typedef struct wy_map wy_map_t;

/* Longest key accepted (bytes); longer keys are refused with WY_ETOOBIG. */
#define WY_MAP_MAX_KEY 65535u

/* New empty map holding at most max_count entries (0: no bound other than
 * memory). Caller frees with wy_map_free. */
wy_map_t *wy_map_new(size_t max_count);

/* Frees the map and its key copies, not the values. NULL is accepted. */
void wy_map_free(wy_map_t *m);

/* Sets key -> val, replacing the value of an existing key. Returns WY_OK,
 * WY_ELIMIT when the key is new and the map already holds max_count entries
 * (nothing changes), WY_ETOOBIG for a key over WY_MAP_MAX_KEY. The key bytes
 * are copied; key may be NULL when klen is 0. Inserting a new key may rebuild
 * the table: it must not happen while an iterator is in use (asserted). */
int wy_map_put(wy_map_t *m, const void *key, size_t klen, void *val);

/* True if key is present; its value is stored in *val when val is not NULL.
 * Use this when NULL is a meaningful value. */
bool wy_map_find(const wy_map_t *m, const void *key, size_t klen, void **val);

/* The value of key, NULL when absent. */
void *wy_map_get(const wy_map_t *m, const void *key, size_t klen);

/* Removes key; its value is stored in *old when old is not NULL. Returns WY_OK
 * or WY_ENOTFOUND. Safe during iteration (for any key, the current one too). */
int wy_map_del(wy_map_t *m, const void *key, size_t klen, void **old);

/* Removes key only while it maps to val (an index entry that a newer owner may have taken
 * over: remove mine, never theirs). Returns WY_OK, or WY_ENOTFOUND when key is absent or maps
 * to another value (nothing changes). */
int wy_map_del_if(wy_map_t *m, const void *key, size_t klen, const void *val);

/* NUL-terminated string keys (the key is the bytes before the NUL). */
int wy_map_put_str(wy_map_t *m, const char *key, void *val);
void *wy_map_get_str(const wy_map_t *m, const char *key);
int wy_map_del_str(wy_map_t *m, const char *key, void **old);

/* uint64 keys (ids, handles). */
int wy_map_put_u64(wy_map_t *m, uint64_t key, void *val);
void *wy_map_get_u64(const wy_map_t *m, uint64_t key);
int wy_map_del_u64(wy_map_t *m, uint64_t key, void **old);

/* Number of entries. */
size_t wy_map_count(const wy_map_t *m);

/* Iteration, in no particular order:
 *
 *     wy_map_iter_t it;
 *     wy_map_iter_init(&it, m);
 *     while (wy_map_next(&it))
 *         if (done(it.val))
 *             wy_map_iter_del(&it);
 *
 * After wy_map_next returns true, it.key / it.klen / it.val describe the
 * current entry; it.key points into the map and is valid until that entry is
 * deleted. Deleting entries (the current one or others) during iteration is
 * allowed and every entry present from start to end is visited exactly once;
 * replacing the value of an existing key is allowed; inserting a new key is not. */
typedef struct {
    wy_map_t *map;
    size_t pos; /* next slot to look at */
    size_t cur; /* slot of the current entry; SIZE_MAX when there is none */
    uint64_t gen;
    const void *key;
    size_t klen;
    void *val;
} wy_map_iter_t;

void wy_map_iter_init(wy_map_iter_t *it, wy_map_t *m);
/* Advances to the next entry; false when there is none left. */
bool wy_map_next(wy_map_iter_t *it);
/* Removes the current entry (the one wy_map_next last returned). */
void wy_map_iter_del(wy_map_iter_t *it);
/* The current key as a uint64 (for maps filled with the _u64 calls). */
uint64_t wy_map_iter_u64(const wy_map_iter_t *it);

/* SipHash-1-3 of data[0..n) under a 128-bit key (16 bytes, read as two
 * little-endian words), exposed for modules that keep their own index. */
uint64_t wy_siphash13(const uint8_t key[16], const void *data, size_t n);

#endif
