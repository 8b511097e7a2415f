/* wy-wsecho — WebSocket echo server on the common HTTP layer, for interop tests:
 * `wy-wsecho --port N [--max-message BYTES]`; serves /echo (WebSocket) and GET /healthz. */
#include "wy_http.h"
#include "wy_ws.h"
#include "wy_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uv_signal_t sig_term, sig_int;
static wy_http_server_t *srv;

static void on_healthz(wy_http_req_t *req, void *ud)
{
    WY_UNUSED(ud);
    wy_http_respond_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static void on_message(wy_ws_conn_t *conn, bool is_binary, const uint8_t *data, size_t len,
                       void *ud)
{
    WY_UNUSED(ud);
    wy_ws_send(conn, is_binary, data, len);
}

static void on_closed(void *ud)
{
    WY_UNUSED(ud);
    uv_close((uv_handle_t *)&sig_term, NULL);
    uv_close((uv_handle_t *)&sig_int, NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
    WY_UNUSED(h);
    char sig[16];
    snprintf(sig, sizeof(sig), "%d", signum);
    wy_log_info("stopping", "signal", sig, (char *)NULL);
    uv_signal_stop(&sig_term);
    uv_signal_stop(&sig_int);
    wy_http_close(srv, on_closed, NULL);
}

static int usage(void)
{
    fprintf(stderr, "usage: wy-wsecho --port N [--max-message BYTES]\n");
    return 2;
}

int main(int argc, char **argv)
{
    long port = -1;
    long long max_msg = 0;
    for (int i = 1; i < argc; i++) {
        char *end;
        if (!strcmp(argv[i], "--port") && i + 1 < argc) {
            port = strtol(argv[++i], &end, 10);
            if (*end || port < 0 || port > 65535)
                return usage();
        } else if (!strcmp(argv[i], "--max-message") && i + 1 < argc) {
            max_msg = strtoll(argv[++i], &end, 10);
            if (*end || max_msg <= 0)
                return usage();
        } else {
            return usage();
        }
    }
    if (port < 0)
        return usage();
    wy_log_init("wsecho", WY_LOG_INFO);

    uv_loop_t loop;
    uv_loop_init(&loop);
    wy_http_limits_t lim;
    wy_http_limits_default(&lim);
    if (max_msg > 0)
        lim.ws_max_message_bytes = (size_t)max_msg;
    wy_http_server_new(&loop, &lim, &srv);
    wy_http_route(srv, "GET", "/healthz", on_healthz, NULL);
    wy_ws_handlers_t h = {.on_message = on_message};
    wy_ws_route(srv, "/echo", &h);
    const char *err = NULL;
    if (wy_http_listen(srv, "127.0.0.1", (int)port, &err) != WY_OK) {
        wy_log_error("cannot listen", "error", err, (char *)NULL);
        return 1;
    }
    uv_signal_init(&loop, &sig_term);
    uv_signal_init(&loop, &sig_int);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_signal_start(&sig_int, on_signal, SIGINT);

    char members[32];
    snprintf(members, sizeof(members), "\"port\":%d", wy_http_port(srv));
    wy_log_raw(WY_LOG_INFO, "ready", members);

    uv_run(&loop, UV_RUN_DEFAULT);
    int rv = uv_loop_close(&loop);
    if (rv != 0) {
        wy_log_error("loop not empty at exit", "error", uv_strerror(rv), (char *)NULL);
        return 1;
    }
    wy_log_info("stopped", (char *)NULL);
    return 0;
}
