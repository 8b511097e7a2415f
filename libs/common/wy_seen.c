/* wy_seen — bounded FIFO set of ids: a ring of entries in insertion order plus
 * a chained hash index over the ring slots. */
#include "wy_seen.h"

#include <string.h>

#define NIL UINT32_MAX

typedef struct {
    char *id; /* owned copy; NULL when the slot is free */
    uint64_t hash;
    uint32_t next; /* next slot in the same bucket chain */
} seen_entry_t;

struct wy_seen_s {
    seen_entry_t *ring; /* capacity slots, filled in insertion order */
    uint32_t *buckets;  /* nbuckets heads of slot chains */
    size_t capacity;
    size_t nbuckets; /* power of two, >= 2 * capacity */
    size_t count;
    size_t head; /* slot of the oldest entry (next to evict) when full */
    uint64_t seed;
};

/* FNV-1a with a per-set random seed and a final mix: ids may come from
 * outside, so bucket placement must not be predictable. */
static uint64_t id_hash(const wy_seen_t *s, const char *id, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ s->seed;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)id[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

static size_t id_len(const char *id)
{
    return strnlen(id, WY_SEEN_MAX_ID);
}

wy_seen_t *wy_seen_new(size_t capacity)
{
    if (capacity < 1)
        capacity = 1;
    if (capacity > (size_t)UINT32_MAX / 4)
        capacity = (size_t)UINT32_MAX / 4;
    wy_seen_t *s = wy_calloc(1, sizeof *s);
    s->capacity = capacity;
    s->nbuckets = 2;
    while (s->nbuckets < capacity * 2)
        s->nbuckets <<= 1;
    s->ring = wy_calloc(capacity, sizeof *s->ring);
    s->buckets = wy_malloc(s->nbuckets * sizeof *s->buckets);
    for (size_t i = 0; i < s->nbuckets; i++)
        s->buckets[i] = NIL;
    wy_random(&s->seed, sizeof s->seed);
    return s;
}

void wy_seen_free(wy_seen_t *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->capacity; i++)
        wy_free(s->ring[i].id);
    wy_free(s->ring);
    wy_free(s->buckets);
    wy_free(s);
}

static uint32_t find(const wy_seen_t *s, const char *id, size_t n, uint64_t h)
{
    for (uint32_t i = s->buckets[h & (s->nbuckets - 1)]; i != NIL; i = s->ring[i].next) {
        const seen_entry_t *e = &s->ring[i];
        if (e->hash == h && strncmp(e->id, id, n) == 0 && e->id[n] == '\0')
            return i;
    }
    return NIL;
}

static void unlink_slot(wy_seen_t *s, uint32_t slot)
{
    uint32_t *link = &s->buckets[s->ring[slot].hash & (s->nbuckets - 1)];
    while (*link != slot)
        link = &s->ring[*link].next;
    *link = s->ring[slot].next;
}

bool wy_seen_contains(const wy_seen_t *s, const char *id)
{
    size_t n = id_len(id);
    return find(s, id, n, id_hash(s, id, n)) != NIL;
}

bool wy_seen_check_add(wy_seen_t *s, const char *id)
{
    size_t n = id_len(id);
    uint64_t h = id_hash(s, id, n);
    if (find(s, id, n, h) != NIL)
        return true;

    uint32_t slot;
    if (s->count < s->capacity) {
        slot = (uint32_t)s->count++;
    } else {
        slot = (uint32_t)s->head;
        unlink_slot(s, slot);
        wy_free(s->ring[slot].id);
        s->head = (s->head + 1) % s->capacity;
    }
    seen_entry_t *e = &s->ring[slot];
    e->id = wy_strndup(id, n);
    e->hash = h;
    uint32_t *bucket = &s->buckets[h & (s->nbuckets - 1)];
    e->next = *bucket;
    *bucket = slot;
    return false;
}

size_t wy_seen_count(const wy_seen_t *s)
{
    return s->count;
}
