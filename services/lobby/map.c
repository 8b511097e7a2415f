/* wy-lobby map: a small string -> pointer hash map (chained) for sessions by id and by
 * account and the revocation cache. */
#include "map.h"
#include "wy_core.h"

#include <string.h>

static size_t map_hash(const char *s)
{
    size_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

void lobby_map_init(lobby_map_t *m)
{
    m->nb = 64;
    m->n = 0;
    m->b = wy_calloc(m->nb, sizeof *m->b);
}

void lobby_map_free(lobby_map_t *m)
{
    for (size_t i = 0; i < m->nb; i++) {
        lobby_map_ent_t *e = m->b[i];
        while (e) {
            lobby_map_ent_t *n = e->next;
            wy_free(e);
            e = n;
        }
    }
    wy_free(m->b);
    m->b = NULL;
    m->nb = m->n = 0;
}

void *lobby_map_get(const lobby_map_t *m, const char *key)
{
    for (lobby_map_ent_t *e = m->b[map_hash(key) & (m->nb - 1)]; e; e = e->next)
        if (strcmp(e->key, key) == 0)
            return e->val;
    return NULL;
}

static void map_grow(lobby_map_t *m)
{
    size_t nb = m->nb * 2;
    lobby_map_ent_t **b = wy_calloc(nb, sizeof *b);
    for (size_t i = 0; i < m->nb; i++) {
        lobby_map_ent_t *e = m->b[i];
        while (e) {
            lobby_map_ent_t *n = e->next;
            size_t j = map_hash(e->key) & (nb - 1);
            e->next = b[j];
            b[j] = e;
            e = n;
        }
    }
    wy_free(m->b);
    m->b = b;
    m->nb = nb;
}

void lobby_map_put(lobby_map_t *m, const char *key, void *val)
{
    lobby_map_ent_t **pp = &m->b[map_hash(key) & (m->nb - 1)];
    for (lobby_map_ent_t *e = *pp; e; e = e->next)
        if (strcmp(e->key, key) == 0) {
            e->val = val;
            return;
        }
    size_t kl = strlen(key);
    lobby_map_ent_t *e = wy_malloc(sizeof *e + kl + 1);
    memcpy(e->key, key, kl + 1);
    e->val = val;
    e->next = *pp;
    *pp = e;
    if (++m->n > m->nb)
        map_grow(m);
}

void lobby_map_del(lobby_map_t *m, const char *key, const void *val)
{
    for (lobby_map_ent_t **pp = &m->b[map_hash(key) & (m->nb - 1)]; *pp; pp = &(*pp)->next) {
        lobby_map_ent_t *e = *pp;
        if (strcmp(e->key, key) == 0) {
            if (val && e->val != val)
                return;
            *pp = e->next;
            wy_free(e);
            m->n--;
            return;
        }
    }
}
