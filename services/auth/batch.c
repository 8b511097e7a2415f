/* wy-auth group commit (batch.h): a queue of items per statement, flushed after the loop's
 * I/O phase (uv_check), so every request that arrived in one loop turn shares a statement. */
#include "batch.h"
#include "auth.h"
#include "wy_list.h"

#include <string.h>

typedef struct {
    wy_list_t link;
    auth_batch_cb cb;
    void *ud;
    bool alone; /* a retry after its batch failed: runs on its own */
    char *cols[];
} item_t;

typedef struct {
    auth_batch_t *b;
    wy_list_t items;
    uint32_t n;
} run_t;

struct auth_batch {
    auth_t *a;
    const wy_pg_stmt_t *st;
    int ncols, nfixed;
    char **fixed;
    bool split;
    uv_check_t check; /* flushes after the loop's I/O phase while items wait */
    uv_idle_t kick;   /* an item added outside the I/O phase: poll without blocking once */
    int open_handles;
    wy_list_t queue;
    uint32_t queued, running, inflight;
    wy_metric_t *m_statements, *m_items;
};

static void on_check(uv_check_t *h);

static void on_kick(uv_idle_t *h)
{
    uv_idle_stop(h);
}

/* The queue is no longer empty: flush at this turn's check, or, when added after it (a timer,
 * a callback of the check phase), at the next one without waiting in poll. */
static void wake(auth_batch_t *b)
{
    uv_check_start(&b->check, on_check);
    uv_idle_start(&b->kick, on_kick);
}

auth_batch_t *auth_batch_new(auth_t *a, const char *kind, const wy_pg_stmt_t *st, int ncols,
                             int nfixed, const char *const *fixed, bool split_on_error)
{
    auth_batch_t *b = wy_calloc(1, sizeof *b);
    char labels[64];
    snprintf(labels, sizeof labels, "kind=\"%s\"", kind);
    b->m_statements = wy_metrics_counter("wy_auth_login_batches_total",
                                         "Batched login statements run, by kind.", labels);
    b->m_items =
        wy_metrics_counter("wy_auth_login_batched_total",
                           "Logins written or looked up by batched statements, by kind.", labels);
    b->a = a;
    b->st = st;
    b->ncols = ncols;
    b->nfixed = nfixed;
    b->split = split_on_error;
    b->fixed = wy_calloc((size_t)nfixed + 1, sizeof *b->fixed);
    for (int i = 0; i < nfixed; i++)
        b->fixed[i] = wy_strdup(fixed[i]);
    wy_list_init(&b->queue);
    uv_check_init(a->loop, &b->check);
    b->check.data = b;
    uv_idle_init(a->loop, &b->kick);
    b->kick.data = b;
    b->open_handles = 2;
    return b;
}

uint32_t auth_batch_depth(const auth_batch_t *b)
{
    return b->queued + b->running;
}

static void item_free(item_t *it)
{
    wy_free(it);
}

int auth_batch_add(auth_batch_t *b, const char *const *cols, auth_batch_cb cb, void *ud)
{
    if (!auth_pg(b->a))
        return WY_EUNAVAIL;
    if (b->queued >= AUTH_BATCH_QUEUE)
        return WY_EBUSY;
    size_t len = 0;
    for (int i = 0; i < b->ncols; i++)
        len += strlen(cols[i]) + 1;
    item_t *it = wy_malloc(sizeof *it + (size_t)b->ncols * sizeof(char *) + len);
    memset(it, 0, sizeof *it);
    char *p = (char *)(it->cols + b->ncols);
    for (int i = 0; i < b->ncols; i++) {
        size_t n = strlen(cols[i]) + 1;
        memcpy(p, cols[i], n);
        it->cols[i] = p;
        p += n;
    }
    it->cb = cb;
    it->ud = ud;
    wy_list_push_back(&b->queue, &it->link);
    if (b->queued++ == 0)
        wake(b);
    return WY_OK;
}

/* ---- array literals: {"v1","v2"} with " and \ escaped, so any text is safe ---- */

typedef struct {
    char *s;
    size_t len, cap;
} buf_t;

static void buf_put(buf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->s = wy_realloc(b->s, b->cap);
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

static char *array_literal(run_t *r, int col)
{
    buf_t b = {0};
    buf_put(&b, "{", 1);
    bool first = true;
    wy_list_t *n;
    for (n = r->items.next; n != &r->items; n = n->next) {
        item_t *it = wy_list_entry(n, item_t, link);
        if (!first)
            buf_put(&b, ",", 1);
        first = false;
        buf_put(&b, "\"", 1);
        for (const char *c = it->cols[col]; *c; c++) {
            if (*c == '"' || *c == '\\')
                buf_put(&b, "\\", 1);
            buf_put(&b, c, 1);
        }
        buf_put(&b, "\"", 1);
    }
    buf_put(&b, "}", 1);
    return b.s;
}

/* ---- runs ---- */

static void flush(auth_batch_t *b);

/* Answers every item of r with the statement's outcome, then frees r. */
static void run_finish(run_t *r, int status, const PGresult *res, const char *err)
{
    auth_batch_t *b = r->b;
    int *rows = wy_malloc(r->n * sizeof *rows);
    for (uint32_t i = 0; i < r->n; i++)
        rows[i] = -1;
    if (res && status == WY_OK && PQntuples(res) > 0) {
        int col = wy_pg_col(res, "ord");
        for (int row = 0; row < PQntuples(res); row++) {
            long ord = strtol(PQgetvalue(res, row, col), NULL, 10);
            if (ord >= 1 && (uint32_t)ord <= r->n)
                rows[ord - 1] = row;
        }
    }
    b->running -= r->n;
    uint32_t i = 0;
    while (!wy_list_empty(&r->items)) {
        item_t *it = wy_list_entry(wy_list_first(&r->items), item_t, link);
        wy_list_remove(&it->link);
        it->cb(status, res, rows[i++], err, it->ud);
        item_free(it);
    }
    wy_free(rows);
    wy_free(r);
}

static void on_run_done(int status, const PGresult *res, const char *err, void *ud)
{
    run_t *r = ud;
    auth_batch_t *b = r->b;
    b->inflight--;
    if (status != WY_OK && res && b->split && r->n > 1) {
        /* A SQL error fails the whole statement: each item runs again on its own, first. */
        while (!wy_list_empty(&r->items)) {
            item_t *it = wy_list_entry(wy_list_last(&r->items), item_t, link);
            wy_list_remove(&it->link);
            it->alone = true;
            wy_list_push_front(&b->queue, &it->link);
        }
        b->running -= r->n;
        if (b->queued == 0)
            wake(b);
        b->queued += r->n;
        wy_free(r);
        flush(b);
        return;
    }
    run_finish(r, status, res, err);
    flush(b);
}

static void submit(run_t *r)
{
    auth_batch_t *b = r->b;
    int np = b->ncols + b->nfixed;
    char **arrays = wy_calloc((size_t)b->ncols, sizeof *arrays);
    const char **params = wy_calloc((size_t)np, sizeof *params);
    for (int i = 0; i < b->ncols; i++)
        params[i] = arrays[i] = array_literal(r, i);
    for (int i = 0; i < b->nfixed; i++)
        params[b->ncols + i] = b->fixed[i];
    wy_pg_t *pg = auth_pg(b->a);
    int rc = pg ? wy_pg_exec(pg, b->st, params, on_run_done, r) : WY_EUNAVAIL;
    for (int i = 0; i < b->ncols; i++)
        wy_free(arrays[i]);
    wy_free(arrays);
    wy_free(params);
    if (rc == WY_OK) {
        b->inflight++;
        wy_metric_inc(b->m_statements);
        wy_metric_add(b->m_items, (double)r->n);
        return;
    }
    run_finish(r, rc, NULL, wy_strerror(rc));
}

static void flush(auth_batch_t *b)
{
    while (b->queued > 0 && b->inflight < AUTH_BATCH_INFLIGHT) {
        run_t *r = wy_calloc(1, sizeof *r);
        r->b = b;
        wy_list_init(&r->items);
        while (b->queued > 0 && r->n < AUTH_BATCH_MAX) {
            item_t *it = wy_list_entry(wy_list_first(&b->queue), item_t, link);
            if (it->alone && r->n > 0)
                break;
            wy_list_remove(&it->link);
            wy_list_push_back(&r->items, &it->link);
            b->queued--;
            r->n++;
            if (it->alone)
                break;
        }
        b->running += r->n;
        submit(r);
    }
    if (b->queued == 0)
        uv_check_stop(&b->check);
}

static void on_check(uv_check_t *h)
{
    auth_batch_t *b = h->data;
    uv_idle_stop(&b->kick);
    flush(b);
}

static void on_closed(uv_handle_t *h)
{
    auth_batch_t *b = h->data;
    if (--b->open_handles > 0)
        return;
    for (int i = 0; i < b->nfixed; i++)
        wy_free(b->fixed[i]);
    wy_free(b->fixed);
    wy_free(b);
}

void auth_batch_free(auth_batch_t *b)
{
    if (!b)
        return;
    uv_close((uv_handle_t *)&b->check, on_closed);
    uv_close((uv_handle_t *)&b->kick, on_closed);
}
