/* wy-lobby state lifetime: the lobby state and each connection are reference-counted and
 * freed by the last callback that needs them (README "On SIGTERM"). */
#include "state.h"

#include <string.h>

lobby_t *lobby_get(wy_daemon_t *d)
{
    return wy_daemon_state(d);
}

void lobby_ref(lobby_t *lb)
{
    lb->refs++;
}

void lobby_unref(lobby_t *lb)
{
    if (--lb->refs > 0)
        return;
    wy_daemon_set_state(lb->d, NULL);
    wy_map_free(lb->by_sid);
    wy_map_free(lb->by_account);
    wy_map_free(lb->revoked);
    for (size_t i = 0; i < WY_ARRAY_LEN(lb->scripts); i++)
        wy_redis_script_free(lb->scripts[i]);
    wy_jwt_keyset_free(lb->static_keys);
    wy_jwt_keyset_free(lb->ticket_keys);
    wy_token_cache_free(lb->key_cache);
    wy_free(lb);
}

static void handle_closed(uv_handle_t *h)
{
    lobby_unref(h->data);
}

void lobby_close_handle(uv_handle_t *h)
{
    uv_close(h, handle_closed);
}

void lobby_conn_ref(lobby_conn_t *c)
{
    c->refs++;
}

static void conn_unlink(lobby_conn_t *c)
{
    lobby_t *lb = c->lb;
    if (c->registered) {
        wy_map_del_if(lb->by_sid, c->sid, strlen(c->sid), c);
        wy_map_del_if(lb->by_account, c->account, strlen(c->account), c);
        c->registered = false;
    }
}

void lobby_conn_unref(lobby_conn_t *c)
{
    if (--c->refs > 0)
        return;
    lobby_t *lb = c->lb;
    conn_unlink(c);
    wy_free(c->token);
    wy_free(c);
    lb->nalloc--;
    lobby_unref(lb);
}
