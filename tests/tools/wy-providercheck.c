/* wy-providercheck — runs wy-auth's login providers (services/auth/providers.c) alone: loads
 * WY_AUTH_STEAM_* / WY_AUTH_OIDC_* from the environment, verifies credentials, prints JSON.
 * Isolates provider bugs from the rest of auth in tests/integration/test_auth_providers.py.
 *
 *   wy-providercheck steam <hex-ticket>
 *   wy-providercheck oidc <id_token>
 *   wy-providercheck --stdin      lines "<steam|oidc> <credential>", answered one by one
 *
 * One line per verification on stdout:
 *   {"method":"oidc","err":"OK","code":0,"subject":"http://idp|alice","message":"ok"}
 * Exit status: 0 when every verification succeeded, 1 otherwise, 2 on bad usage or config. */
#include "../../services/auth/providers.c"

#include <stdlib.h>

#include "wy_config.h"

typedef struct {
    uv_loop_t *loop;
    bool done;
    int err;
    char *subject;
    char *message;
} result_t;

static void on_result(int err, const char *subject, const char *message, void *ud)
{
    result_t *r = ud;
    r->done = true;
    r->err = err;
    r->subject = subject ? wy_strdup(subject) : NULL;
    r->message = wy_strdup(message ? message : "");
    uv_stop(r->loop); /* else UV_RUN_ONCE goes on to block in poll until the next event */
}

/* Verify one credential, running the loop until the answer; prints it. Returns the err. */
static int check_one(uv_loop_t *loop, auth_providers_t *p, const char *method, const char *cred)
{
    result_t r = {.loop = loop};
    int rc;
    if (strcmp(method, "steam") == 0)
        rc = auth_steam_verify(p, cred, on_result, &r);
    else if (strcmp(method, "oidc") == 0)
        rc = auth_oidc_verify(p, cred, on_result, &r);
    else {
        r.done = true;
        r.err = rc = WY_EINVAL;
        r.message = wy_strdup("method must be steam or oidc");
    }
    if (rc == WY_OK && r.done) {
        fprintf(stderr, "wy-providercheck: callback ran inside the verify call\n");
        exit(3);
    }
    while (!r.done)
        uv_run(loop, UV_RUN_ONCE);
    json_t *out =
        json_pack("{s:s, s:s, s:i, s:s?, s:s}", "method", method, "err", wy_errname(r.err), "code",
                  r.err, "subject", r.subject, "message", r.message);
    char *s = json_dumps(out, JSON_COMPACT);
    printf("%s\n", s);
    fflush(stdout);
    free(s);
    json_decref(out);
    wy_free(r.subject);
    wy_free(r.message);
    return r.err;
}

int main(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "--stdin") != 0 && argc != 3)) {
        fprintf(stderr, "usage: wy-providercheck steam <ticket> | oidc <id_token> | --stdin\n");
        return 2;
    }
    wy_log_level_t lvl = WY_LOG_INFO;
    const char *lv = getenv("WY_LOG_LEVEL");
    if (lv && *lv)
        wy_log_level_parse(lv, &lvl);
    wy_log_init("providercheck", lvl);
    const char *err = NULL;
    /* The providers' table holds offsets: point it at a struct of our own. */
    static auth_providers_cfg_t cfg;
    wy_cfg_entry_t tab[32];
    if (auth_provider_nconfig > WY_ARRAY_LEN(tab))
        return 2;
    wy_config_rebase(tab, auth_provider_config, auth_provider_nconfig, &cfg);
    if (wy_config_load(tab, auth_provider_nconfig, &err) != WY_OK) {
        fprintf(stderr, "wy-providercheck: %s\n", err);
        return 2;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    auth_providers_t *p = NULL;
    if (auth_providers_new(&loop, &cfg, &p, &err) != WY_OK) {
        fprintf(stderr, "wy-providercheck: %s\n", err);
        wy_config_free(tab, auth_provider_nconfig);
        uv_loop_close(&loop);
        return 2;
    }
    int status = 0;
    if (strcmp(argv[1], "--stdin") == 0) {
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        while ((n = getline(&line, &cap, stdin)) > 0) {
            while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                line[--n] = '\0';
            if (n == 0)
                continue;
            char *sp = strchr(line, ' ');
            const char *cred = sp ? sp + 1 : "";
            if (sp)
                *sp = '\0';
            if (check_one(&loop, p, line, cred) != WY_OK)
                status = 1;
        }
        free(line);
    } else if (check_one(&loop, p, argv[1], argv[2]) != WY_OK) {
        status = 1;
    }
    auth_providers_close(p);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0) {
        fprintf(stderr, "wy-providercheck: handles left open after close\n");
        status = 3;
    }
    wy_config_free(tab, auth_provider_nconfig);
    return status;
}
