/* wy-lobby map: a small string -> pointer hash map (chained), owned by the loop thread.
 * The lowest lobby module: it depends on libs/common only. */
#ifndef LOBBY_MAP_H
#define LOBBY_MAP_H

#include <stddef.h>

typedef struct lobby_map_ent {
    struct lobby_map_ent *next;
    void *val;
    char key[];
} lobby_map_ent_t;

typedef struct {
    lobby_map_ent_t **b;
    size_t nb, n;
} lobby_map_t;

void lobby_map_init(lobby_map_t *m);
void lobby_map_free(lobby_map_t *m);
void *lobby_map_get(const lobby_map_t *m, const char *key);
/* Sets key -> val (replacing); the key is copied. */
void lobby_map_put(lobby_map_t *m, const char *key, void *val);
/* Removes key if it maps to val (val NULL: whatever it maps to). */
void lobby_map_del(lobby_map_t *m, const char *key, const void *val);

#endif
