/* wy_seen — bounded FIFO set of ids: a ring of ids in insertion order (for
 * eviction) indexed by a wy_map (for lookup). */
#include "wy_seen.h"

#include <assert.h>
#include <string.h>

#include "wy_map.h"

struct wy_seen_s {
    char **ring;     /* capacity owned ids in insertion order; NULL when free */
    wy_map_t *index; /* id -> anything (membership only) */
    size_t capacity;
    size_t count;
    size_t head; /* slot of the oldest id (next to evict) when full */
};

static size_t id_len(const char *id)
{
    return strnlen(id, WY_SEEN_MAX_ID);
}

wy_seen_t *wy_seen_new(size_t capacity)
{
    if (capacity < 1)
        capacity = 1;
    wy_seen_t *s = wy_calloc(1, sizeof *s);
    s->capacity = capacity;
    s->ring = wy_calloc(capacity, sizeof *s->ring);
    s->index = wy_map_new(capacity);
    return s;
}

void wy_seen_free(wy_seen_t *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->capacity; i++)
        wy_free(s->ring[i]);
    wy_free(s->ring);
    wy_map_free(s->index);
    wy_free(s);
}

bool wy_seen_contains(const wy_seen_t *s, const char *id)
{
    return wy_map_find(s->index, id, id_len(id), NULL);
}

bool wy_seen_check_add(wy_seen_t *s, const char *id)
{
    size_t n = id_len(id);
    if (wy_map_find(s->index, id, n, NULL))
        return true;

    size_t slot;
    if (s->count < s->capacity) {
        slot = s->count++;
    } else {
        slot = s->head;
        char *oldest = s->ring[slot];
        wy_map_del(s->index, oldest, strlen(oldest), NULL);
        wy_free(oldest);
        s->head = (s->head + 1) % s->capacity;
    }
    s->ring[slot] = wy_strndup(id, n);
    int rc = wy_map_put(s->index, id, n, s->ring[slot]);
    assert(rc == WY_OK); /* the map's bound is capacity, and an id was evicted above when full */
    (void)rc;
    return false;
}

size_t wy_seen_count(const wy_seen_t *s)
{
    return s->count;
}
