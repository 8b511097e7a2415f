/* wy-auth password hashing on the worker pool (see password.h). */
#include "password.h"

#include <argon2.h>
#include <string.h>

#include <openssl/crypto.h>

#include "wy_list.h"

#define SALT_LEN 16
#define HASH_LEN 32

struct auth_hasher {
    uv_loop_t *loop;
    uint32_t m_kib, t, inflight, max_inflight;
    bool closing;
    char *dummy;    /* encoded hash of a random password, for unknown users */
    wy_list_t jobs; /* in flight (job_t.node), so close can cancel the queued ones */
};

typedef struct job {
    uv_work_t work;
    wy_list_t node;
    auth_hasher_t *h;
    bool verify, dummy;
    char *password;
    char *encoded; /* verify: input; hash: output */
    int rc;        /* argon2 result */
    auth_hash_cb hash_cb;
    auth_verify_cb verify_cb;
    void *ud;
} job_t;

static size_t encoded_cap(const auth_hasher_t *h)
{
    return argon2_encodedlen(h->t, h->m_kib, 1, SALT_LEN, HASH_LEN, Argon2_id);
}

static int hash_now(const auth_hasher_t *h, const char *pw, char **out)
{
    uint8_t salt[SALT_LEN];
    wy_random(salt, sizeof salt);
    size_t cap = encoded_cap(h);
    char *enc = wy_malloc(cap);
    int rc = argon2id_hash_encoded(h->t, h->m_kib, 1, pw, strlen(pw), salt, SALT_LEN, HASH_LEN, enc,
                                   cap);
    if (rc != ARGON2_OK) {
        wy_free(enc);
        *out = NULL;
        return rc;
    }
    *out = enc;
    return ARGON2_OK;
}

int auth_hasher_new(uv_loop_t *loop, uint32_t memory_kib, uint32_t iterations,
                    uint32_t max_inflight, auth_hasher_t **out, const char **err)
{
    if (memory_kib < 8 || iterations < 1 || max_inflight < 1) {
        *err = "argon2: memory, iterations and queue bound must be positive";
        return WY_EINVAL;
    }
    auth_hasher_t *h = wy_calloc(1, sizeof *h);
    wy_list_init(&h->jobs);
    h->loop = loop;
    h->m_kib = memory_kib;
    h->t = iterations;
    h->max_inflight = max_inflight;
    uint8_t rnd[24];
    wy_random(rnd, sizeof rnd);
    char pw[49];
    for (size_t i = 0; i < sizeof rnd; i++)
        snprintf(pw + 2 * i, 3, "%02x", rnd[i]);
    int rc = hash_now(h, pw, &h->dummy);
    OPENSSL_cleanse(pw, sizeof pw);
    if (rc != ARGON2_OK) {
        *err = argon2_error_message(rc);
        wy_free(h);
        return WY_EINVAL;
    }
    *out = h;
    return WY_OK;
}

static void free_hasher_if_done(auth_hasher_t *h)
{
    if (h->closing && h->inflight == 0) {
        wy_free(h->dummy);
        wy_free(h);
    }
}

static void work_cb(uv_work_t *w)
{
    job_t *j = w->data;
    if (j->verify) {
        j->rc = argon2id_verify(j->encoded, j->password, strlen(j->password));
    } else {
        j->rc = hash_now(j->h, j->password, &j->encoded);
    }
}

static void job_free(job_t *j)
{
    OPENSSL_cleanse(j->password, strlen(j->password));
    wy_free(j->password);
    wy_free(j->encoded);
    wy_free(j);
}

static void after_cb(uv_work_t *w, int status)
{
    job_t *j = w->data;
    auth_hasher_t *h = j->h;
    h->inflight--;
    wy_list_remove(&j->node);
    bool canceled = status == UV_ECANCELED || h->closing;
    if (j->verify) {
        bool match = !j->dummy && j->rc == ARGON2_OK;
        j->verify_cb(canceled ? WY_ECANCELED : WY_OK, canceled ? false : match, j->ud);
    } else {
        int err = canceled ? WY_ECANCELED : (j->rc == ARGON2_OK ? WY_OK : WY_EINTERNAL);
        j->hash_cb(err, err == WY_OK ? j->encoded : NULL, j->ud);
    }
    job_free(j);
    free_hasher_if_done(h);
}

static int queue_job(auth_hasher_t *h, job_t *j)
{
    if (h->closing)
        return WY_ECANCELED;
    if (h->inflight >= h->max_inflight)
        return WY_EBUSY;
    j->h = h;
    j->work.data = j;
    if (uv_queue_work(h->loop, &j->work, work_cb, after_cb) != 0)
        return WY_EINTERNAL;
    h->inflight++;
    wy_list_push_front(&h->jobs, &j->node);
    return WY_OK;
}

/* Queues j; takes ownership of j (freed here when it cannot be queued). */
static int submit(auth_hasher_t *h, job_t *j)
{
    int rc = queue_job(h, j);
    if (rc != WY_OK)
        job_free(j);
    return rc;
}

int auth_hash(auth_hasher_t *h, const char *password, auth_hash_cb cb, void *ud)
{
    job_t *j = wy_calloc(1, sizeof *j);
    j->password = wy_strdup(password);
    j->hash_cb = cb;
    j->ud = ud;
    return submit(h, j);
}

int auth_verify(auth_hasher_t *h, const char *encoded, const char *password, auth_verify_cb cb,
                void *ud)
{
    job_t *j = wy_calloc(1, sizeof *j);
    j->verify = true;
    j->dummy = encoded == NULL;
    j->encoded = wy_strdup(encoded ? encoded : h->dummy);
    j->password = wy_strdup(password);
    j->verify_cb = cb;
    j->ud = ud;
    return submit(h, j);
}

uint32_t auth_hasher_inflight(const auth_hasher_t *h)
{
    return h->inflight;
}

void auth_hasher_close(auth_hasher_t *h)
{
    h->closing = true;
    /* Queued jobs are cancelled (after_cb runs with UV_ECANCELED); running ones finish
     * and report WY_ECANCELED. The last completion frees h. */
    wy_list_t *pos;
    wy_list_foreach(pos, &h->jobs)
    {
        uv_cancel((uv_req_t *)&wy_container_of(pos, job_t, node)->work);
    }
    free_hasher_if_done(h);
}
