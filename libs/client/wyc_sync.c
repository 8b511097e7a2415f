/* wyc blocking layer: one client on a private libuv loop; each call runs the loop until its
 * answer arrives. Lobby events are queued for wyc_sync_next_event. */
#include "wyc_int.h"

#include <string.h>

struct wyc_sync {
    uv_loop_t loop;
    uv_async_t wake; /* wyc_sync_interrupt */
    uv_timer_t timer;
    wyc_ctx_t *ctx;
    wyc_client_t *c;
    wyc_event_t *events; /* ring of WYC_SYNC_MAX_EVENTS */
    size_t head, count;
    volatile int interrupted;
    bool timed_out;
    /* the call in progress */
    bool done;
    wyc_error_t err;
    wyc_account_t *acct;
    char *nick_out;
    size_t nick_cap;
    int64_t *nick_next;
    wyc_presence_t *pres_out;
    size_t pres_cap, *pres_n;
    /* the game (wyc_sync_enter_game / game_join / game_leave) */
    wyc_entry_t *entry_out;
    wyc_game_t *game;
    wyc_game_welcome_t *welcome_out;
    double left_x, left_y;
    bool game_closed;
    int64_t game_chat_req; /* wyc_sync_game_chat_send: the request waited for */
    wyc_chat_result_t *chat_out;
    wyc_chat_message_t *hist_out;
    size_t hist_cap, *hist_n;
    uint64_t *hist_last;
    bool *hist_more;
    wyc_chat_report_t *rep_out;
    size_t rep_cap, *rep_n;
    wyc_chat_channel_t *chan_out;
    size_t chan_cap, *chan_n;
    bool *rep_more;
};

static void on_event(wyc_client_t *c, const wyc_event_t *ev, void *ud)
{
    (void)c;
    wyc_sync_t *s = ud;
    if (s->count == WYC_SYNC_MAX_EVENTS) {
        s->head = (s->head + 1) % WYC_SYNC_MAX_EVENTS;
        s->count--;
    }
    s->events[(s->head + s->count) % WYC_SYNC_MAX_EVENTS] = *ev;
    s->count++;
}

static void on_wake(uv_async_t *a)
{
    (void)a;
}

int wyc_sync_new(const wyc_config_t *cfg, wyc_sync_t **out, const char **err)
{
    wyc_sync_t *s = wy_calloc(1, sizeof *s);
    uv_loop_init(&s->loop);
    int rc = wyc_ctx_new(&s->loop, cfg, &s->ctx, err);
    if (rc != WY_OK) {
        uv_loop_close(&s->loop);
        wy_free(s);
        return rc;
    }
    uv_async_init(&s->loop, &s->wake, on_wake);
    uv_timer_init(&s->loop, &s->timer);
    s->timer.data = s;
    s->events = wy_calloc(WYC_SYNC_MAX_EVENTS, sizeof *s->events);
    wyc_client_new(s->ctx, on_event, s, &s->c);
    *out = s;
    return WY_OK;
}

void wyc_sync_free(wyc_sync_t *s)
{
    if (!s)
        return;
    wyc_game_close(s->game);
    wyc_client_close(s->c);
    wyc_ctx_close(s->ctx, NULL, NULL);
    uv_close((uv_handle_t *)&s->wake, NULL);
    uv_close((uv_handle_t *)&s->timer, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
    wy_free(s->events);
    wy_free(s);
}

wyc_client_t *wyc_sync_client(wyc_sync_t *s)
{
    return s->c;
}

static void begin(wyc_sync_t *s)
{
    s->done = false;
    memset(&s->err, 0, sizeof s->err);
}

/* Runs the loop until the call's callback ran; rc is the start's result. */
static int finish(wyc_sync_t *s, int rc, wyc_error_t *err)
{
    if (rc != WY_OK) {
        wyc__err_set(&s->err, rc, WYC_SRC_CLIENT, "%s",
                     rc == WY_ESTATE   ? "not logged in (or not connected to the lobby)"
                     : rc == WY_EINVAL ? "invalid argument"
                                       : wy_strerror(rc));
    } else {
        while (!s->done)
            uv_run(&s->loop, UV_RUN_ONCE);
    }
    if (err)
        *err = s->err;
    return s->err.code;
}

static void done_cb(wyc_client_t *c, const wyc_error_t *e, void *ud)
{
    (void)c;
    wyc_sync_t *s = ud;
    s->err = *e;
    s->done = true;
}

int wyc_sync_register(wyc_sync_t *s, const char *username, const char *password, wyc_error_t *err)
{
    begin(s);
    return finish(s, wyc_register(s->c, username, password, done_cb, s), err);
}

int wyc_sync_login(wyc_sync_t *s, const wyc_credential_t *cred, wyc_error_t *err)
{
    begin(s);
    return finish(s, wyc_login(s->c, cred, done_cb, s), err);
}

int wyc_sync_resume(wyc_sync_t *s, const char *refresh_token, wyc_error_t *err)
{
    begin(s);
    return finish(s, wyc_resume(s->c, refresh_token, done_cb, s), err);
}

int wyc_sync_refresh(wyc_sync_t *s, wyc_error_t *err)
{
    begin(s);
    return finish(s, wyc_refresh(s->c, done_cb, s), err);
}

int wyc_sync_logout(wyc_sync_t *s, wyc_error_t *err)
{
    begin(s);
    return finish(s, wyc_logout(s->c, done_cb, s), err);
}

int wyc_sync_link(wyc_sync_t *s, const wyc_credential_t *cred, wyc_error_t *err)
{
    begin(s);
    return finish(s, wyc_link(s->c, cred, done_cb, s), err);
}

static void me_cb(wyc_client_t *c, const wyc_error_t *e, const wyc_account_t *a, void *ud)
{
    (void)c;
    wyc_sync_t *s = ud;
    s->err = *e;
    if (a)
        *s->acct = *a;
    s->done = true;
}

int wyc_sync_me(wyc_sync_t *s, wyc_account_t *out, wyc_error_t *err)
{
    begin(s);
    s->acct = out;
    return finish(s, wyc_me(s->c, me_cb, s), err);
}

static void on_timeout(uv_timer_t *t)
{
    wyc_sync_t *s = t->data;
    s->timed_out = true;
}

int wyc_sync_lobby_connect(wyc_sync_t *s, wyc_welcome_t *out, wyc_error_t *err)
{
    wyc_error_t e;
    int rc = wyc_lobby_connect(s->c);
    if (rc != WY_OK) {
        wyc__err_set(&e, rc, WYC_SRC_CLIENT, "%s",
                     rc == WY_ESTATE ? "not logged in, or the lobby is already connected"
                                     : wy_strerror(rc));
        if (err)
            *err = e;
        return rc;
    }
    /* Reconnects are allowed while waiting, within one overall timeout. */
    uint32_t limit = s->ctx->cfg.timeout_ms * 2;
    wyc__err_set(&e, WY_ETIMEDOUT, WYC_SRC_NETWORK, "no welcome from the lobby at %s in %u ms",
                 s->ctx->lobby_url, limit);
    uint64_t deadline = wy_now_ms() + limit;
    for (;;) {
        uint64_t now = wy_now_ms();
        if (now >= deadline) {
            wyc_lobby_close(s->c);
            break;
        }
        wyc_event_t ev;
        if (wyc_sync_next_event(s, (uint32_t)(deadline - now), &ev) != WY_OK) {
            wyc_lobby_close(s->c);
            break;
        }
        if (ev.type == WYC_EV_WELCOME) {
            if (out)
                *out = ev.welcome;
            wyc__err_ok(&e);
            break;
        }
        if (ev.type == WYC_EV_DISCONNECTED) {
            e = ev.error; /* the most telling failure so far */
            continue;
        }
        if (ev.type == WYC_EV_CLOSED) {
            e = ev.error;
            if (e.code == WY_OK)
                e.code = WY_ECANCELED;
            break;
        }
        if (ev.type == WYC_EV_KICKED || ev.type == WYC_EV_AUTH_LOST)
            continue; /* CLOSED follows */
    }
    /* Drop the CLOSED that wyc_lobby_close defers, so it does not surface later. */
    if (e.code != WY_OK) {
        uv_run(&s->loop, UV_RUN_NOWAIT);
        s->count = 0;
    }
    if (err)
        *err = e;
    return e.code;
}

static void nick_cb(wyc_client_t *c, const wyc_error_t *e, const char *nickname,
                    int64_t next_change_at, void *ud)
{
    (void)c;
    wyc_sync_t *s = ud;
    s->err = *e;
    if (s->nick_out && s->nick_cap)
        snprintf(s->nick_out, s->nick_cap, "%s", nickname ? nickname : "");
    if (s->nick_next)
        *s->nick_next = next_change_at;
    s->done = true;
}

int wyc_sync_set_nickname(wyc_sync_t *s, const char *nickname, char *stored, size_t cap,
                          int64_t *next_change_at, wyc_error_t *err)
{
    begin(s);
    s->nick_out = stored;
    s->nick_cap = cap;
    s->nick_next = next_change_at;
    return finish(s, wyc_lobby_set_nickname(s->c, nickname, nick_cb, s), err);
}

static void pres_cb(wyc_client_t *c, const wyc_error_t *e, const wyc_presence_t *entries, size_t n,
                    void *ud)
{
    (void)c;
    wyc_sync_t *s = ud;
    s->err = *e;
    size_t k = n < s->pres_cap ? n : s->pres_cap;
    if (k)
        memcpy(s->pres_out, entries, k * sizeof *entries);
    if (s->pres_n)
        *s->pres_n = k;
    s->done = true;
}

int wyc_sync_presence(wyc_sync_t *s, const char *const *account_ids, size_t n_ids,
                      const char *const *nicknames, size_t n_nicks, wyc_presence_t *out, size_t cap,
                      size_t *n, wyc_error_t *err)
{
    begin(s);
    s->pres_out = out;
    s->pres_cap = cap;
    s->pres_n = n;
    if (n)
        *n = 0;
    return finish(s, wyc_lobby_presence(s->c, account_ids, n_ids, nicknames, n_nicks, pres_cb, s),
                  err);
}

static void enter_cb(wyc_client_t *c, const wyc_error_t *e, const wyc_entry_t *entry, void *ud)
{
    (void)c;
    wyc_sync_t *s = ud;
    s->err = *e;
    if (entry)
        *s->entry_out = *entry;
    s->done = true;
}

int wyc_sync_enter_game(wyc_sync_t *s, const char *character_id, wyc_entry_t *entry,
                        wyc_error_t *err)
{
    begin(s);
    s->entry_out = entry;
    return finish(s, wyc_lobby_enter_game(s->c, character_id, enter_cb, s), err);
}

/* Game events: the welcome or the end finish a join, LEFT then CLOSED finish a leave. */
static void game_cb(wyc_game_t *g, const wyc_game_event_t *ev, void *ud)
{
    (void)g;
    wyc_sync_t *s = ud;
    if (ev->type == WYC_GAME_EV_WELCOME) {
        if (s->welcome_out)
            *s->welcome_out = ev->welcome;
        wyc__err_ok(&s->err);
        s->done = true;
    } else if (ev->type == WYC_GAME_EV_LEFT) {
        s->left_x = ev->x;
        s->left_y = ev->y;
    } else if (ev->type == WYC_GAME_EV_UPDATE) {
        return; /* applied to the game's mirror already (wyc_game_entities) */
    } else if (ev->type == WYC_GAME_EV_CHAT) {
        wyc_event_t *e = wy_calloc(1, sizeof *e); /* queued as a chat event of the player */
        e->type = WYC_EV_CHAT;
        e->chat = *ev->chat;
        on_event(s->c, e, s);
        wy_free(e);
    } else if (ev->type == WYC_GAME_EV_CHAT_SENT) {
        if (s->game_chat_req != (int64_t)ev->request_id)
            return; /* not the one waited for */
        s->game_chat_req = 0;
        s->err = ev->error;
        if (ev->chat_sent && s->chat_out)
            *s->chat_out = *ev->chat_sent;
        s->done = true;
    } else {
        s->err = ev->error;
        s->game = NULL; /* freed by the library once closed */
        s->game_closed = true;
        s->done = true;
    }
}

int wyc_sync_game_join(wyc_sync_t *s, const wyc_entry_t *entry, wyc_game_welcome_t *out,
                       wyc_error_t *err)
{
    if (s->game) {
        wyc_game_close(s->game);
        s->game = NULL;
    }
    begin(s);
    s->welcome_out = out;
    s->game_closed = false;
    return finish(s, wyc_game_join(s->ctx, entry, game_cb, s, &s->game), err);
}

int wyc_sync_game_chat_send(wyc_sync_t *s, const char *channel_id, const char *to_account_id,
                            const char *text, wyc_chat_result_t *out, wyc_error_t *err)
{
    begin(s);
    s->chat_out = out;
    int64_t id = s->game ? wyc_game_chat_send(s->game, channel_id, to_account_id, text) : WY_ESTATE;
    s->game_chat_req = id > 0 ? id : 0;
    return finish(s, id > 0 ? WY_OK : (int)id, err);
}

wyc_game_t *wyc_sync_game(wyc_sync_t *s)
{
    return s->game;
}

int wyc_sync_game_leave(wyc_sync_t *s, double *x, double *y, wyc_error_t *err)
{
    begin(s);
    int rc = s->game ? wyc_game_leave(s->game) : WY_ESTATE;
    rc = finish(s, rc, err);
    while (rc == WY_OK && !s->game_closed) /* LEFT came; wait for the close */
        uv_run(&s->loop, UV_RUN_ONCE);
    if (err)
        *err = s->err;
    if (x)
        *x = s->left_x;
    if (y)
        *y = s->left_y;
    return s->err.code;
}

static void chat_cb(wyc_client_t *c, const wyc_error_t *e, const wyc_chat_result_t *r, void *ud)
{
    (void)c;
    wyc_sync_t *s = ud;
    s->err = *e;
    if (s->chat_out)
        *s->chat_out = *r;
    s->done = true;
}

/* begin() for a chat request answered through chat_cb into out. */
static void chat_begin(wyc_sync_t *s, wyc_chat_result_t *out)
{
    begin(s);
    s->chat_out = out;
    if (out)
        memset(out, 0, sizeof *out);
}

int wyc_sync_chat(wyc_sync_t *s, const char *op, const char *channel_id, const char *arg,
                  const char *text, wyc_chat_result_t *out, wyc_error_t *err)
{
    chat_begin(s, out);
    int rc = WY_EINVAL;
    if (!op)
        rc = WY_EINVAL;
    else if (!strcmp(op, "send"))
        rc = wyc_chat_send(s->c, channel_id, NULL, text, chat_cb, s);
    else if (!strcmp(op, "whisper"))
        rc = wyc_chat_send(s->c, NULL, arg, text, chat_cb, s);
    else if (!strcmp(op, "create"))
        rc = wyc_chat_create(s->c, channel_id, arg, chat_cb, s);
    else if (!strcmp(op, "join"))
        rc = wyc_chat_join(s->c, channel_id, chat_cb, s);
    else if (!strcmp(op, "leave"))
        rc = wyc_chat_leave(s->c, channel_id, chat_cb, s);
    else if (!strcmp(op, "invite"))
        rc = wyc_chat_invite(s->c, channel_id, arg, chat_cb, s);
    else if (!strcmp(op, "kick"))
        rc = wyc_chat_kick(s->c, channel_id, arg, chat_cb, s);
    return finish(s, rc, err);
}

int wyc_sync_chat_delete(wyc_sync_t *s, const char *channel_id, uint64_t seq, const char *reason,
                         wyc_chat_result_t *out, wyc_error_t *err)
{
    chat_begin(s, out);
    return finish(s, wyc_chat_delete(s->c, channel_id, seq, reason, chat_cb, s), err);
}

int wyc_sync_chat_report(wyc_sync_t *s, const char *channel_id, uint64_t seq, const char *reason,
                         wyc_chat_result_t *out, wyc_error_t *err)
{
    chat_begin(s, out);
    return finish(s, wyc_chat_report(s->c, channel_id, seq, reason, chat_cb, s), err);
}

int wyc_sync_chat_mute(wyc_sync_t *s, const char *account_id, const char *channel_id,
                       int64_t duration_ms, const char *reason, wyc_chat_result_t *out,
                       wyc_error_t *err)
{
    chat_begin(s, out);
    return finish(s, wyc_chat_mute(s->c, account_id, channel_id, duration_ms, reason, chat_cb, s),
                  err);
}

int wyc_sync_chat_resolve(wyc_sync_t *s, int64_t report_id, const char *resolution,
                          wyc_chat_result_t *out, wyc_error_t *err)
{
    chat_begin(s, out);
    return finish(s, wyc_chat_resolve(s->c, report_id, resolution, chat_cb, s), err);
}

static void channels_cb(wyc_client_t *c, const wyc_error_t *e, const wyc_chat_channel_t *chs,
                        size_t n, void *ud)
{
    (void)c;
    wyc_sync_t *s = ud;
    s->err = *e;
    size_t k = n < s->chan_cap ? n : s->chan_cap;
    if (k)
        memcpy(s->chan_out, chs, k * sizeof *chs);
    if (s->chan_n)
        *s->chan_n = k;
    s->done = true;
}

int wyc_sync_chat_channels(wyc_sync_t *s, wyc_chat_channel_t *out, size_t cap, size_t *n,
                           wyc_error_t *err)
{
    begin(s);
    s->chan_out = out;
    s->chan_cap = cap;
    s->chan_n = n;
    if (n)
        *n = 0;
    return finish(s, wyc_chat_channels(s->c, channels_cb, s), err);
}

static void reports_cb(wyc_client_t *c, const wyc_error_t *e, const wyc_chat_report_t *r, size_t n,
                       bool more, void *ud)
{
    (void)c;
    wyc_sync_t *s = ud;
    s->err = *e;
    size_t k = n < s->rep_cap ? n : s->rep_cap;
    if (k)
        memcpy(s->rep_out, r, k * sizeof *r);
    if (s->rep_n)
        *s->rep_n = k;
    if (s->rep_more)
        *s->rep_more = more || k < n;
    s->done = true;
}

int wyc_sync_chat_reports(wyc_sync_t *s, uint64_t after_id, uint32_t limit, bool resolved,
                          wyc_chat_report_t *out, size_t cap, size_t *n, bool *more,
                          wyc_error_t *err)
{
    begin(s);
    s->rep_out = out;
    s->rep_cap = cap;
    s->rep_n = n;
    s->rep_more = more;
    if (n)
        *n = 0;
    return finish(s, wyc_chat_reports(s->c, after_id, limit, resolved, reports_cb, s), err);
}

static void hist_cb(wyc_client_t *c, const wyc_error_t *e, const wyc_chat_message_t *msgs, size_t n,
                    uint64_t last_seq, bool more, void *ud)
{
    (void)c;
    wyc_sync_t *s = ud;
    s->err = *e;
    size_t k = n < s->hist_cap ? n : s->hist_cap;
    if (k)
        memcpy(s->hist_out, msgs, k * sizeof *msgs);
    if (s->hist_n)
        *s->hist_n = k;
    if (s->hist_last)
        *s->hist_last = last_seq;
    if (s->hist_more)
        *s->hist_more = more || k < n;
    s->done = true;
}

int wyc_sync_chat_history(wyc_sync_t *s, const char *channel_id, uint64_t after_seq,
                          uint64_t before_seq, bool forward, uint32_t limit,
                          wyc_chat_message_t *out, size_t cap, size_t *n, uint64_t *last_seq,
                          bool *more, wyc_error_t *err)
{
    begin(s);
    s->hist_out = out;
    s->hist_cap = cap;
    s->hist_n = n;
    s->hist_last = last_seq;
    s->hist_more = more;
    if (n)
        *n = 0;
    return finish(
        s, wyc_chat_history(s->c, channel_id, after_seq, before_seq, forward, limit, hist_cb, s),
        err);
}

int wyc_sync_next_event(wyc_sync_t *s, uint32_t timeout_ms, wyc_event_t *ev)
{
    s->timed_out = false;
    if (timeout_ms)
        uv_timer_start(&s->timer, on_timeout, timeout_ms, 0);
    while (!s->count && !s->timed_out && !s->interrupted)
        uv_run(&s->loop, UV_RUN_ONCE);
    uv_timer_stop(&s->timer);
    if (s->interrupted) {
        s->interrupted = 0;
        return WY_ECANCELED;
    }
    if (!s->count)
        return WY_ETIMEDOUT;
    *ev = s->events[s->head];
    s->head = (s->head + 1) % WYC_SYNC_MAX_EVENTS;
    s->count--;
    return WY_OK;
}

void wyc_sync_interrupt(wyc_sync_t *s)
{
    s->interrupted = 1;
    uv_async_send(&s->wake);
}

uv_loop_t *wyc__sync_loop(wyc_sync_t *s)
{
    return &s->loop;
}
