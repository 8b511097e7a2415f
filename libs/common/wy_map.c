/* wy_map — open-addressing hash map with tombstones and SipHash-1-3 keyed per
 * map (see wy_map.h for the design). */
#include "wy_map.h"

#include <assert.h>
#include <string.h>

#define INLINE_KEY 16
#define MIN_SLOTS  8

enum { SLOT_EMPTY = 0, SLOT_FULL, SLOT_TOMB };

typedef struct {
    uint64_t hash;
    void *val;
    uint32_t klen;
    uint8_t state;
    union {
        uint8_t inl[INLINE_KEY]; /* klen <= INLINE_KEY */
        uint8_t *ptr;            /* klen > INLINE_KEY: owned copy */
    } key;
} slot_t;

struct wy_map {
    slot_t *slots;
    size_t cap; /* power of two */
    size_t count, tombs;
    size_t max_count; /* 0: unbounded */
    uint64_t gen;     /* bumped on every rebuild; iterators check it */
    uint8_t seed[16];
};

/* ---------------------------------------------------------------- SipHash-1-3 */

static inline uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

static inline uint64_t load_le64(const uint8_t *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
           (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 |
           (uint64_t)p[7] << 56;
}

#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = rotl(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = rotl(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = rotl(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = rotl(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = rotl(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = rotl(v2, 32);                                                                         \
    } while (0)

uint64_t wy_siphash13(const uint8_t key[16], const void *data, size_t n)
{
    const uint8_t *p = data;
    uint64_t k0 = load_le64(key), k1 = load_le64(key + 8);
    uint64_t v0 = k0 ^ 0x736f6d6570736575ull;
    uint64_t v1 = k1 ^ 0x646f72616e646f6dull;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ull;
    uint64_t v3 = k1 ^ 0x7465646279746573ull;
    size_t whole = n & ~(size_t)7;
    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = load_le64(p + i);
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)n << 56;
    for (size_t i = 0; i < (n & 7); i++)
        b |= (uint64_t)p[whole + i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---------------------------------------------------------------- table */

static inline const uint8_t *slot_key(const slot_t *s)
{
    return s->klen > INLINE_KEY ? s->key.ptr : s->key.inl;
}

static inline bool slot_is(const slot_t *s, uint64_t h, const void *key, size_t klen)
{
    return s->state == SLOT_FULL && s->hash == h && s->klen == klen &&
           (klen == 0 || memcmp(slot_key(s), key, klen) == 0);
}

static void slot_clear(wy_map_t *m, slot_t *s)
{
    if (s->klen > INLINE_KEY)
        wy_free(s->key.ptr);
    s->state = SLOT_TOMB;
    s->val = NULL;
    s->klen = 0;
    m->count--;
    m->tombs++;
}

wy_map_t *wy_map_new(size_t max_count)
{
    wy_map_t *m = wy_calloc(1, sizeof *m);
    m->cap = MIN_SLOTS;
    m->slots = wy_calloc(m->cap, sizeof *m->slots);
    m->max_count = max_count;
    wy_random(m->seed, sizeof m->seed);
    return m;
}

void wy_map_free(wy_map_t *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].state == SLOT_FULL && m->slots[i].klen > INLINE_KEY)
            wy_free(m->slots[i].key.ptr);
    wy_free(m->slots);
    wy_free(m);
}

/* Index of key's slot, or SIZE_MAX. */
static size_t lookup(const wy_map_t *m, uint64_t h, const void *key, size_t klen)
{
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        const slot_t *s = &m->slots[i];
        if (s->state == SLOT_EMPTY)
            return SIZE_MAX;
        if (slot_is(s, h, key, klen))
            return i;
    }
}

/* Moves every live entry into a fresh array of cap slots (drops tombstones). */
static void rebuild(wy_map_t *m, size_t cap)
{
    slot_t *old = m->slots;
    size_t old_cap = m->cap;
    m->slots = wy_calloc(cap, sizeof *m->slots);
    m->cap = cap;
    m->tombs = 0;
    m->gen++;
    for (size_t j = 0; j < old_cap; j++) {
        if (old[j].state != SLOT_FULL)
            continue;
        size_t i = old[j].hash & (cap - 1);
        while (m->slots[i].state != SLOT_EMPTY)
            i = (i + 1) & (cap - 1);
        m->slots[i] = old[j];
    }
    wy_free(old);
}

int wy_map_put(wy_map_t *m, const void *key, size_t klen, void *val)
{
    if (klen > WY_MAP_MAX_KEY)
        return WY_ETOOBIG;
    uint64_t h = wy_siphash13(m->seed, key, klen);
    size_t mask = m->cap - 1, tomb = SIZE_MAX, i;
    for (i = h & mask;; i = (i + 1) & mask) {
        slot_t *s = &m->slots[i];
        if (s->state == SLOT_EMPTY)
            break;
        if (s->state == SLOT_TOMB) {
            if (tomb == SIZE_MAX)
                tomb = i;
        } else if (slot_is(s, h, key, klen)) {
            s->val = val;
            return WY_OK;
        }
    }
    if (m->max_count && m->count >= m->max_count)
        return WY_ELIMIT;
    if (tomb != SIZE_MAX) {
        i = tomb; /* reuse: the load does not change */
        m->tombs--;
    } else if ((m->count + m->tombs + 1) * 4 > m->cap * 3) {
        /* Live entries past half the slots: double; otherwise tombstones
         * fill the table and a rebuild at the same size clears them. */
        rebuild(m, (m->count + 1) * 2 > m->cap ? m->cap * 2 : m->cap);
        mask = m->cap - 1;
        for (i = h & mask; m->slots[i].state != SLOT_EMPTY; i = (i + 1) & mask)
            ;
    }
    slot_t *s = &m->slots[i];
    s->state = SLOT_FULL;
    s->hash = h;
    s->val = val;
    s->klen = (uint32_t)klen;
    if (klen > INLINE_KEY) {
        s->key.ptr = wy_malloc(klen);
        memcpy(s->key.ptr, key, klen);
    } else if (klen) {
        memcpy(s->key.inl, key, klen);
    }
    m->count++;
    return WY_OK;
}

bool wy_map_find(const wy_map_t *m, const void *key, size_t klen, void **val)
{
    if (klen > WY_MAP_MAX_KEY)
        return false;
    size_t i = lookup(m, wy_siphash13(m->seed, key, klen), key, klen);
    if (i == SIZE_MAX)
        return false;
    if (val)
        *val = m->slots[i].val;
    return true;
}

void *wy_map_get(const wy_map_t *m, const void *key, size_t klen)
{
    void *v = NULL;
    return wy_map_find(m, key, klen, &v) ? v : NULL;
}

int wy_map_del(wy_map_t *m, const void *key, size_t klen, void **old)
{
    if (klen > WY_MAP_MAX_KEY)
        return WY_ENOTFOUND;
    size_t i = lookup(m, wy_siphash13(m->seed, key, klen), key, klen);
    if (i == SIZE_MAX)
        return WY_ENOTFOUND;
    if (old)
        *old = m->slots[i].val;
    slot_clear(m, &m->slots[i]);
    return WY_OK;
}

int wy_map_del_if(wy_map_t *m, const void *key, size_t klen, const void *val)
{
    if (klen > WY_MAP_MAX_KEY)
        return WY_ENOTFOUND;
    size_t i = lookup(m, wy_siphash13(m->seed, key, klen), key, klen);
    if (i == SIZE_MAX || m->slots[i].val != val)
        return WY_ENOTFOUND;
    slot_clear(m, &m->slots[i]);
    return WY_OK;
}

int wy_map_put_str(wy_map_t *m, const char *key, void *val)
{
    return wy_map_put(m, key, strlen(key), val);
}

void *wy_map_get_str(const wy_map_t *m, const char *key)
{
    return wy_map_get(m, key, strlen(key));
}

int wy_map_del_str(wy_map_t *m, const char *key, void **old)
{
    return wy_map_del(m, key, strlen(key), old);
}

int wy_map_put_u64(wy_map_t *m, uint64_t key, void *val)
{
    return wy_map_put(m, &key, sizeof key, val);
}

void *wy_map_get_u64(const wy_map_t *m, uint64_t key)
{
    return wy_map_get(m, &key, sizeof key);
}

int wy_map_del_u64(wy_map_t *m, uint64_t key, void **old)
{
    return wy_map_del(m, &key, sizeof key, old);
}

size_t wy_map_count(const wy_map_t *m)
{
    return m->count;
}

/* ---------------------------------------------------------------- iteration */

void wy_map_iter_init(wy_map_iter_t *it, wy_map_t *m)
{
    memset(it, 0, sizeof *it);
    it->map = m;
    it->gen = m->gen;
    it->cur = SIZE_MAX;
}

bool wy_map_next(wy_map_iter_t *it)
{
    wy_map_t *m = it->map;
    assert(it->gen == m->gen && "wy_map: new key inserted during iteration");
    while (it->pos < m->cap) {
        const slot_t *s = &m->slots[it->pos++];
        if (s->state == SLOT_FULL) {
            it->cur = it->pos - 1;
            it->key = slot_key(s);
            it->klen = s->klen;
            it->val = s->val;
            return true;
        }
    }
    it->cur = SIZE_MAX;
    it->key = NULL;
    it->klen = 0;
    it->val = NULL;
    return false;
}

void wy_map_iter_del(wy_map_iter_t *it)
{
    wy_map_t *m = it->map;
    assert(it->gen == m->gen);
    if (it->cur == SIZE_MAX)
        return; /* no current entry (before the first, after the last) */
    slot_t *s = &m->slots[it->cur];
    it->cur = SIZE_MAX;
    if (s->state != SLOT_FULL)
        return; /* already deleted through wy_map_del */
    slot_clear(m, s);
    it->key = NULL;
    it->klen = 0;
}

uint64_t wy_map_iter_u64(const wy_map_iter_t *it)
{
    uint64_t k = 0;
    if (it->key && it->klen == sizeof k)
        memcpy(&k, it->key, sizeof k);
    return k;
}
