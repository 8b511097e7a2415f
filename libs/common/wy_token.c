/* wy_token — Wyvern access tokens (EdDSA JWT) on wy_jwt, key files and the verifier key
 * cache (see wy_token.h). */
#include "wy_token.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#define TTL_MAX (30 * 86400) /* no access token lives longer than a month */

/* Messages that name a file are built per thread, so *err stays valid until the next call. */
static _Thread_local char err_buf[512];

static const char *err_path(const char *path, const char *why)
{
    snprintf(err_buf, sizeof err_buf, "%s: %s", path, why);
    return err_buf;
}

static bool fits(const char *s, size_t max)
{
    return s && s[0] && strnlen(s, max + 1) <= max;
}

static const char *const role_names[] = {"moderator"}; /* bit i = 1u << i */

uint32_t wy_token_role_bit(const char *name)
{
    for (size_t i = 0; name && i < sizeof role_names / sizeof *role_names; i++)
        if (strcmp(name, role_names[i]) == 0)
            return 1u << i;
    return 0;
}

uint32_t wy_token_roles_parse(const char *csv, unsigned *unknown)
{
    uint32_t bits = 0;
    unsigned bad = 0;
    const char *p = csv ? csv : "";
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t n = strcspn(p, ",");
        size_t m = n;
        while (m > 0 && p[m - 1] == ' ')
            m--;
        if (m > 0) {
            char name[32];
            uint32_t bit = 0;
            if (m < sizeof name) {
                memcpy(name, p, m);
                name[m] = 0;
                bit = wy_token_role_bit(name);
            }
            bits |= bit;
            bad += bit == 0;
        }
        p += n;
    }
    if (unknown)
        *unknown = bad;
    return bits;
}

/* The "roles" claim of bits, NULL when bits is 0. */
static json_t *roles_json(uint32_t bits)
{
    if (!bits)
        return NULL;
    json_t *a = json_array();
    for (size_t i = 0; i < sizeof role_names / sizeof *role_names; i++)
        if (bits & (1u << i))
            json_array_append_new(a, json_string(role_names[i]));
    return a;
}

/* Reads the optional "roles" claim into *bits: WY_OK, or WY_EINVAL when it is not an array of
 * at most WY_TOKEN_ROLES_MAX strings. */
static int roles_claim(const json_t *cl, uint32_t *bits, const char **err)
{
    *bits = 0;
    const json_t *a = json_object_get(cl, "roles");
    if (!a)
        return WY_OK;
    if (!json_is_array(a) || json_array_size(a) > WY_TOKEN_ROLES_MAX) {
        *err = "roles must be an array of at most 16 strings";
        return WY_EINVAL;
    }
    for (size_t i = 0; i < json_array_size(a); i++) {
        const json_t *r = json_array_get(a, i);
        if (!json_is_string(r)) {
            *err = "roles must be an array of at most 16 strings";
            return WY_EINVAL;
        }
        *bits |= wy_token_role_bit(json_string_value(r));
    }
    return WY_OK;
}

int wy_token_issue(const wy_jwt_keyset_t *ks, const char *kid, const char *iss, const char *aud,
                   const char *sub, const char *sid, int64_t ttl_s, int64_t now, char **out_token,
                   wy_token_claims_t *out_claims, const char **err)
{
    return wy_token_issue_roles(ks, kid, iss, aud, sub, sid, 0, ttl_s, now, out_token, out_claims,
                                err);
}

int wy_token_issue_roles(const wy_jwt_keyset_t *ks, const char *kid, const char *iss,
                         const char *aud, const char *sub, const char *sid, uint32_t roles,
                         int64_t ttl_s, int64_t now, char **out_token,
                         wy_token_claims_t *out_claims, const char **err)
{
    const char *dummy;
    if (!err)
        err = &dummy;
    if (out_token)
        *out_token = NULL;
    if (out_claims)
        memset(out_claims, 0, sizeof *out_claims);
    if (!ks || !out_token || !fits(kid, WY_JWT_KID_MAX) || !fits(iss, WY_TOKEN_ISS_MAX) ||
        !fits(aud, WY_TOKEN_AUD_MAX) || !fits(sub, WY_TOKEN_ID_MAX) ||
        !fits(sid, WY_TOKEN_ID_MAX) || ttl_s <= 0 || ttl_s > TTL_MAX) {
        *err = "bad arguments (empty or over-long claim, or ttl outside 1 s..30 days)";
        return WY_EINVAL;
    }
    int rc = wy_jwt_keyset_signer(ks, kid, WY_JWT_ALG_EDDSA, err);
    if (rc == WY_EINVAL)
        *err = "access tokens are signed with EdDSA keys only";
    if (rc != WY_OK)
        return rc;
    if (now == 0)
        now = (int64_t)time(NULL);

    wy_token_claims_t c;
    memset(&c, 0, sizeof c);
    wy_jwt_new_jti(c.jti);
    snprintf(c.sub, sizeof c.sub, "%s", sub);
    snprintf(c.sid, sizeof c.sid, "%s", sid);
    snprintf(c.iss, sizeof c.iss, "%s", iss);
    snprintf(c.aud, sizeof c.aud, "%s", aud);
    snprintf(c.kid, sizeof c.kid, "%s", kid);
    c.iat = now;
    c.exp = now + ttl_s;
    c.roles = roles;

    json_t *claims =
        json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:s}", "iss", c.iss, "aud", c.aud, "sub", c.sub,
                  "sid", c.sid, "iat", (json_int_t)c.iat, "exp", (json_int_t)c.exp, "jti", c.jti);
    if (!claims) {
        *err = "claims are not valid UTF-8";
        return WY_EINVAL;
    }
    json_t *rj = roles_json(roles);
    if (rj)
        json_object_set_new(claims, "roles", rj);
    rc = wy_jwt_sign(ks, kid, claims, out_token, err);
    json_decref(claims);
    if (rc == WY_OK && out_claims)
        *out_claims = c;
    return rc;
}

/* Copy a required string claim into dst (cap includes the NUL). */
static int str_claim(const json_t *claims, const char *name, char *dst, size_t cap,
                     const char **err, const char *missing, const char *too_long)
{
    json_t *j = json_object_get(claims, name);
    if (!json_is_string(j) || json_string_length(j) == 0) {
        *err = missing;
        return WY_EINVAL;
    }
    size_t n = json_string_length(j);
    if (n >= cap || strlen(json_string_value(j)) != n) {
        *err = too_long;
        return WY_EINVAL;
    }
    memcpy(dst, json_string_value(j), n + 1);
    return WY_OK;
}

int wy_token_verify(const wy_jwt_keyset_t *ks, const char *token, size_t len,
                    const wy_token_verify_opts_t *opts, wy_token_claims_t *out, const char **err)
{
    const char *dummy;
    if (!err)
        err = &dummy;
    if (out)
        memset(out, 0, sizeof *out);
    if (!ks || !token || !opts || !out || !opts->iss || !opts->aud) {
        *err = "bad arguments (key set, token, iss and aud are required)";
        return WY_EINVAL;
    }
    wy_jwt_verify_opts_t vo = {.allowed_algs = WY_JWT_ALG_EDDSA, .max_len = opts->max_len};
    wy_jwt_t jwt;
    int rc = wy_jwt_verify(ks, token, len, &vo, &jwt, err);
    if (rc != WY_OK)
        return rc;

    wy_token_claims_t c;
    memset(&c, 0, sizeof c);
    const json_t *cl = jwt.claims;
    if ((rc = str_claim(cl, "sub", c.sub, sizeof c.sub, err, "missing sub", "sub too long")) ||
        (rc = str_claim(cl, "sid", c.sid, sizeof c.sid, err, "missing sid", "sid too long")) ||
        (rc = str_claim(cl, "jti", c.jti, sizeof c.jti, err, "missing jti", "jti too long")) ||
        (rc = str_claim(cl, "iss", c.iss, sizeof c.iss, err, "missing iss", "iss too long")) ||
        (rc = str_claim(cl, "aud", c.aud, sizeof c.aud, err, "aud missing or not a string",
                        "aud too long")))
        goto done;
    wy_jwt_claims_opts_t co = {.iss = opts->iss,
                               .aud = opts->aud,
                               .leeway_s = opts->leeway_s,
                               .now = opts->now,
                               .require_iat = true};
    if ((rc = wy_jwt_check_claims(cl, &co, err)) != WY_OK ||
        (rc = roles_claim(cl, &c.roles, err)) != WY_OK)
        goto done;
    c.iat = (int64_t)json_integer_value(json_object_get(cl, "iat"));
    c.exp = (int64_t)json_integer_value(json_object_get(cl, "exp"));
    c.nbf = (int64_t)json_integer_value(json_object_get(cl, "nbf")); /* 0 when absent */
    memcpy(c.kid, jwt.kid, sizeof c.kid);
    *out = c;
done:
    wy_jwt_clear(&jwt);
    return rc;
}

int wy_token_keyset_load_file(wy_jwt_keyset_t *ks, const char *path, const char *kid,
                              const char **err)
{
    const char *dummy;
    if (!err)
        err = &dummy;
    if (!ks || !path) {
        *err = "no key set or path";
        return WY_EINVAL;
    }
    char kid_buf[WY_JWT_KID_MAX + 1];
    if (!kid) {
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        size_t n = strlen(base);
        if (n > 4 && strcmp(base + n - 4, ".pem") == 0)
            n -= 4;
        if (n == 0 || n > WY_JWT_KID_MAX) {
            *err = err_path(path, "file name does not make a kid of 1..64 chars");
            return WY_EINVAL;
        }
        memcpy(kid_buf, base, n);
        kid_buf[n] = '\0';
        kid = kid_buf;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *err = err_path(path, strerror(errno));
        return WY_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        *err = err_path(path, "not a regular file");
        return WY_EIO;
    }
    if (st.st_size <= 0 || st.st_size > (off_t)WY_TOKEN_KEYFILE_MAX) {
        close(fd);
        *err = err_path(path, "key file is empty or larger than 64 KiB");
        return st.st_size <= 0 ? WY_EINVAL : WY_ETOOBIG;
    }
    size_t size = (size_t)st.st_size, got = 0;
    char *buf = wy_malloc(size);
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    int rc;
    const char *why = NULL;
    if (got != size) {
        why = "short read";
        rc = WY_EIO;
    } else {
        rc = wy_jwt_keyset_add_pem(ks, kid, WY_JWT_ALG_EDDSA, buf, size, &why);
    }
    OPENSSL_cleanse(buf, size);
    wy_free(buf);
    if (rc != WY_OK)
        *err = err_path(path, why);
    return rc;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int wy_token_keyset_load_dir(wy_jwt_keyset_t *ks, const char *dir, const char **err)
{
    const char *dummy;
    if (!err)
        err = &dummy;
    if (!ks || !dir) {
        *err = "no key set or folder";
        return WY_EINVAL;
    }
    DIR *d = opendir(dir);
    if (!d) {
        *err = err_path(dir, strerror(errno));
        return WY_EIO;
    }
    char *names[WY_JWKS_MAX_KEYS] = {0};
    size_t n = 0;
    int rc = WY_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        /* Kubernetes mounts a Secret as symlinks into hidden "..data" folders: skip dot names. */
        if (e->d_name[0] == '.' || len <= 4 || strcmp(e->d_name + len - 4, ".pem") != 0)
            continue;
        if (n >= WY_JWKS_MAX_KEYS) {
            *err = err_path(dir, "more than 64 key files");
            rc = WY_ELIMIT;
            break;
        }
        names[n++] = wy_strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof names[0], cmp_names); /* deterministic order, readable logs */
    size_t loaded = 0;
    for (size_t i = 0; i < n; i++) {
        if (rc == WY_OK) {
            char *path = wy_sprintf("%s/%s", dir, names[i]);
            struct stat st;
            if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
                wy_free(path);
                wy_free(names[i]);
                continue;
            }
            rc = wy_token_keyset_load_file(ks, path, NULL, err);
            if (rc == WY_OK)
                loaded++;
            wy_free(path);
        }
        wy_free(names[i]);
    }
    if (rc == WY_OK && loaded == 0) {
        *err = err_path(dir, "no *.pem key file (refusing to run without a key)");
        rc = WY_ENOTFOUND;
    }
    return rc;
}

int wy_token_generate_ed25519_pem(char **pem)
{
    if (!pem)
        return WY_EINVAL;
    *pem = NULL;
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    BIO *bio = BIO_new(BIO_s_mem());
    int rc = WY_EINTERNAL;
    if (pkey && bio && PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL) == 1) {
        BUF_MEM *mem = NULL;
        BIO_get_mem_ptr(bio, &mem);
        if (mem && mem->length > 0) {
            *pem = wy_strndup(mem->data, mem->length);
            OPENSSL_cleanse(mem->data, mem->length);
            rc = WY_OK;
        }
    }
    BIO_free(bio);
    EVP_PKEY_free(pkey);
    ERR_clear_error();
    return rc;
}

/* ---- verifier-side key cache ---- */

struct wy_token_cache {
    wy_jwt_keyset_t *ks;
    uint64_t fetched_ms;
};

wy_token_cache_t *wy_token_cache_new(void)
{
    return wy_calloc(1, sizeof(wy_token_cache_t));
}

void wy_token_cache_free(wy_token_cache_t *c)
{
    if (!c)
        return;
    wy_jwt_keyset_free(c->ks);
    wy_free(c);
}

int wy_token_cache_update_jwks(wy_token_cache_t *c, const char *json, const char **err)
{
    const char *dummy;
    if (!err)
        err = &dummy;
    if (!c || !json) {
        *err = "no cache or JWKS document";
        return WY_EINVAL;
    }
    size_t len = strnlen(json, WY_JWKS_MAX_LEN + 1);
    if (len > WY_JWKS_MAX_LEN) {
        *err = "JWKS document too large";
        return WY_ETOOBIG;
    }
    wy_jwt_keyset_t *ks = wy_jwt_keyset_new();
    int rc = wy_jwt_keyset_add_jwks(ks, json, len, NULL, NULL, err);
    if (rc == WY_OK) {
        size_t eddsa = 0;
        for (size_t i = 0; i < wy_jwt_keyset_count(ks); i++) {
            wy_jwt_alg_t alg;
            if (wy_jwt_keyset_lookup(ks, wy_jwt_keyset_kid_at(ks, i), &alg, NULL) == WY_OK &&
                alg == WY_JWT_ALG_EDDSA)
                eddsa++;
        }
        if (eddsa == 0) {
            *err = "JWKS holds no EdDSA key; keeping the previous keys";
            rc = WY_EINVAL;
        }
    }
    if (rc != WY_OK) {
        wy_jwt_keyset_free(ks);
        return rc;
    }
    wy_jwt_keyset_free(c->ks);
    c->ks = ks;
    c->fetched_ms = wy_wall_ms();
    return WY_OK;
}

const wy_jwt_keyset_t *wy_token_cache_keyset(const wy_token_cache_t *c)
{
    return c ? c->ks : NULL;
}

uint64_t wy_token_cache_fetched_ms(const wy_token_cache_t *c)
{
    return c ? c->fetched_ms : 0;
}
