/* wy_gamewire: encoder and decoder of wy-game's compact update sections (layout in
 * wy_gamewire.h). */
#include "wy_gamewire.h"

#include <math.h>
#include <string.h>

int32_t wy_gw_quantise(double metres)
{
    double u = metres * WY_GW_QUANT;
    if (u >= (double)INT32_MAX)
        return INT32_MAX;
    if (u <= (double)INT32_MIN)
        return INT32_MIN;
    return (int32_t)lround(u);
}

double wy_gw_metres(int32_t units)
{
    return (double)units / WY_GW_QUANT;
}

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint32_t zigzag(int32_t v)
{
    return ((uint32_t)v << 1) ^ (v < 0 ? UINT32_MAX : 0);
}

static int32_t unzigzag(uint32_t v)
{
    return (int32_t)(v >> 1) ^ -(int32_t)(v & 1);
}

size_t wy_gw_change_body(const wy_gw_entity_t *before, const wy_gw_entity_t *now, uint8_t *body,
                         unsigned *form)
{
    int64_t dx = (int64_t)now->qx - before->qx, dy = (int64_t)now->qy - before->qy;
    bool moved = dx != 0 || dy != 0;
    *form = 0;
    if (now->mode == before->mode && now->kind == before->kind) {
        if (!moved)
            return 0;
        if (dx >= -8 && dx <= 7 && dy >= -8 && dy <= 7) {
            body[0] = (uint8_t)((dx + 8) << 4 | (dy + 8));
            return 1;
        }
        if (dx >= -128 && dx <= 127 && dy >= -128 && dy <= 127) {
            *form = 1;
            body[0] = (uint8_t)(int8_t)dx;
            body[1] = (uint8_t)(int8_t)dy;
            return 2;
        }
    }
    *form = 2;
    size_t n = 1;
    uint8_t mask = 0;
    if (moved) {
        mask |= 1;
        n += put_varint(body + n, zigzag((int32_t)dx));
        n += put_varint(body + n, zigzag((int32_t)dy));
    }
    if (now->mode != before->mode) {
        mask |= 2;
        body[n++] = now->mode;
    }
    if (now->kind != before->kind) {
        mask |= 4;
        body[n++] = now->kind;
    }
    body[0] = mask;
    return n;
}

size_t wy_gw_enter_body(const wy_gw_entity_t *e, uint8_t *body)
{
    size_t n = 0;
    body[n++] = e->kind;
    body[n++] = e->mode;
    n += put_varint(body + n, (uint32_t)(e->qx < 0 ? 0 : e->qx));
    n += put_varint(body + n, (uint32_t)(e->qy < 0 ? 0 : e->qy));
    return n;
}

void wy_gw_section_init(wy_gw_section_t *s, uint8_t *buf, size_t cap)
{
    *s = (wy_gw_section_t){.buf = buf, .cap = cap};
}

/* Writes varint(key) then body, all or nothing. */
static int put_record(wy_gw_section_t *s, uint32_t id, uint64_t key, const uint8_t *body,
                      size_t len)
{
    if (s->started && id <= s->prev_id)
        return WY_EINVAL;
    size_t need = varint_len(key) + len;
    if (s->overflow || s->len + need > s->cap) {
        s->overflow = true;
        return WY_ETOOBIG;
    }
    s->len += put_varint(s->buf + s->len, key);
    /* Bodies are a few bytes (a move is one): a loop beats a call to memcpy. */
    uint8_t *d = s->buf + s->len;
    for (size_t i = 0; i < len; i++)
        d[i] = body[i];
    s->len += len;
    s->prev_id = id;
    s->started = true;
    return WY_OK;
}

int wy_gw_put_entered(wy_gw_section_t *s, uint32_t id, const uint8_t *body, size_t len)
{
    return put_record(s, id, (uint64_t)(id - s->prev_id), body, len);
}

int wy_gw_put_changed(wy_gw_section_t *s, uint32_t id, unsigned form, const uint8_t *body,
                      size_t len)
{
    return put_record(s, id, (uint64_t)(id - s->prev_id) << 2 | (form & 3), body, len);
}

int wy_gw_put_left(wy_gw_section_t *s, uint32_t id)
{
    return put_record(s, id, (uint64_t)(id - s->prev_id), NULL, 0);
}

/* ---- decoder ---- */

typedef struct {
    const uint8_t *p, *end;
} reader_t;

static bool get_varint(reader_t *r, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end)
            return false;
        uint8_t b = *r->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return true;
        }
    }
    return false;
}

static bool get_u8(reader_t *r, uint8_t *out)
{
    if (r->p >= r->end)
        return false;
    *out = *r->p++;
    return true;
}

/* Next id of a section from its delta; false when not ascending or past UINT32_MAX. */
static bool next_id(uint64_t delta, bool started, uint32_t *prev)
{
    if (started && delta == 0)
        return false;
    uint64_t id = (uint64_t)*prev + delta;
    if (id > UINT32_MAX)
        return false;
    *prev = (uint32_t)id;
    return true;
}

void wy_gw_mirror_init(wy_gw_mirror_t *m, wy_gw_entity_t *ents, size_t cap)
{
    *m = (wy_gw_mirror_t){.ents = ents, .cap = cap};
}

/* Index of the first entity with id >= id. */
static size_t lower_bound(const wy_gw_mirror_t *m, uint32_t id)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->ents[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int bad(const char **err, const char *msg)
{
    if (err)
        *err = msg;
    return WY_EINVAL;
}

/* Walks the records of one section: each starts with varint(id delta << low_bits | low). */
typedef struct {
    reader_t r;
    uint32_t id;
    bool started;
    const char *truncated, *unordered; /* messages */
} section_reader_t;

/* 1 with the next record's id and low bits, 0 at the end, WY_EINVAL (*err set) when bad. */
static int next_record(section_reader_t *s, unsigned low_bits, unsigned *low, const char **err)
{
    if (s->r.p >= s->r.end)
        return 0;
    uint64_t key;
    if (!get_varint(&s->r, &key))
        return bad(err, s->truncated);
    *low = (unsigned)(key & ((1u << low_bits) - 1));
    if (!next_id(key >> low_bits, s->started, &s->id))
        return bad(err, s->unordered);
    s->started = true;
    return 1;
}

static section_reader_t section_reader(const char *truncated, const char *unordered,
                                       const uint8_t *p, size_t n)
{
    /* p may be NULL with n == 0: no pointer arithmetic on it then. */
    section_reader_t s = {.truncated = truncated, .unordered = unordered};
    if (n > 0)
        s.r = (reader_t){p, p + n};
    return s;
}

/* Index of the entity with that id, or m->n when it is not in the mirror. */
static size_t index_of(const wy_gw_mirror_t *m, uint32_t id)
{
    size_t i = lower_bound(m, id);
    return i < m->n && m->ents[i].id == id ? i : m->n;
}

const wy_gw_entity_t *wy_gw_mirror_find(const wy_gw_mirror_t *m, uint32_t id)
{
    size_t i = index_of(m, id);
    return i < m->n ? &m->ents[i] : NULL;
}

static int apply_left(wy_gw_mirror_t *m, const uint8_t *p, size_t n, size_t *count,
                      const char **err)
{
    section_reader_t s = section_reader("left: truncated id", "left: ids not ascending", p, n);
    unsigned low;
    int rc;
    while ((rc = next_record(&s, 0, &low, err)) == 1) {
        size_t i = index_of(m, s.id);
        if (i == m->n)
            return bad(err, "left: an entity that is not visible");
        memmove(&m->ents[i], &m->ents[i + 1], (m->n - i - 1) * sizeof m->ents[0]);
        m->n--;
        (*count)++;
    }
    return rc;
}

static int apply_entered(wy_gw_mirror_t *m, const uint8_t *p, size_t n, size_t *count,
                         const char **err)
{
    section_reader_t s =
        section_reader("entered: truncated id", "entered: ids not ascending", p, n);
    unsigned low;
    int rc;
    while ((rc = next_record(&s, 0, &low, err)) == 1) {
        uint64_t qx, qy;
        wy_gw_entity_t e = {.id = s.id};
        if (!get_u8(&s.r, &e.kind) || !get_u8(&s.r, &e.mode) || !get_varint(&s.r, &qx) ||
            !get_varint(&s.r, &qy))
            return bad(err, "entered: truncated record");
        if (qx > INT32_MAX || qy > INT32_MAX)
            return bad(err, "entered: position out of range");
        e.qx = (int32_t)qx;
        e.qy = (int32_t)qy;
        size_t i = lower_bound(m, e.id);
        if (i < m->n && m->ents[i].id == e.id)
            return bad(err, "entered: an entity already visible");
        if (m->n >= m->cap)
            return bad(err, "entered: more entities than the mirror holds");
        memmove(&m->ents[i + 1], &m->ents[i], (m->n - i) * sizeof m->ents[0]);
        m->ents[i] = e;
        m->n++;
        (*count)++;
    }
    return rc;
}

static bool add_delta(int32_t *q, int64_t d)
{
    int64_t v = (int64_t)*q + d;
    if (v < INT32_MIN || v > INT32_MAX)
        return false;
    *q = (int32_t)v;
    return true;
}

/* The body of a general (form 2) change; applies mode and kind, returns the move. */
static int general_change(reader_t *r, wy_gw_entity_t *e, int64_t *dx, int64_t *dy,
                          const char **err)
{
    uint8_t mask;
    if (!get_u8(r, &mask))
        return bad(err, "changed: truncated mask");
    if (mask & ~7u)
        return bad(err, "changed: unknown mask bits");
    if (mask & 1) {
        uint64_t zx, zy;
        if (!get_varint(r, &zx) || !get_varint(r, &zy) || zx > UINT32_MAX || zy > UINT32_MAX)
            return bad(err, "changed: bad position delta");
        *dx = unzigzag((uint32_t)zx);
        *dy = unzigzag((uint32_t)zy);
    }
    if ((mask & 2) && !get_u8(r, &e->mode))
        return bad(err, "changed: truncated mode");
    if ((mask & 4) && !get_u8(r, &e->kind))
        return bad(err, "changed: truncated kind");
    return WY_OK;
}

static int apply_changed(wy_gw_mirror_t *m, const uint8_t *p, size_t n, size_t *count,
                         const char **err)
{
    section_reader_t s =
        section_reader("changed: truncated key", "changed: ids not ascending", p, n);
    unsigned form;
    int rc;
    while ((rc = next_record(&s, 2, &form, err)) == 1) {
        size_t i = index_of(m, s.id);
        if (i == m->n)
            return bad(err, "changed: an entity that is not visible");
        wy_gw_entity_t *e = &m->ents[i];
        int64_t dx = 0, dy = 0;
        uint8_t b0, b1;
        if (form == 0) {
            if (!get_u8(&s.r, &b0))
                return bad(err, "changed: truncated small move");
            dx = (int64_t)(b0 >> 4) - 8;
            dy = (int64_t)(b0 & 15) - 8;
        } else if (form == 1) {
            if (!get_u8(&s.r, &b0) || !get_u8(&s.r, &b1))
                return bad(err, "changed: truncated move");
            dx = (int8_t)b0;
            dy = (int8_t)b1;
        } else if (form == 2) {
            if (general_change(&s.r, e, &dx, &dy, err) != WY_OK)
                return WY_EINVAL;
        } else {
            return bad(err, "changed: reserved form 3");
        }
        if (!add_delta(&e->qx, dx) || !add_delta(&e->qy, dy))
            return bad(err, "changed: position out of range");
        (*count)++;
    }
    return rc;
}

int wy_gw_mirror_apply(wy_gw_mirror_t *m, bool reset, const uint8_t *entered, size_t nentered,
                       const uint8_t *changed, size_t nchanged, const uint8_t *left, size_t nleft,
                       wy_gw_applied_t *applied, const char **err)
{
    wy_gw_applied_t a = {0};
    if (reset)
        m->n = 0;
    int rc = apply_left(m, left, nleft, &a.left, err);
    if (rc == WY_OK)
        rc = apply_entered(m, entered, nentered, &a.entered, err);
    if (rc == WY_OK)
        rc = apply_changed(m, changed, nchanged, &a.changed, err);
    if (applied)
        *applied = a;
    return rc;
}
