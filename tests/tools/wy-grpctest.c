/* wy-grpctest — a tiny gRPC server for interop tests: the standard health service plus
 * /wyvern.test.Echo/Echo (Wyvern__Envelope in, the same Envelope out). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.pb-c.h"
#include "wy_grpc.h"
#include "wy_log.h"

typedef struct {
    uv_loop_t *loop;
    wy_grpc_rt_t *rt;
    wy_grpc_server_t *srv;
    uv_signal_t sigterm, sigint;
    bool stopping;
} tool_t;

static void echo(wy_grpc_call_id_t call, const ProtobufCMessage *req, void *arg)
{
    WY_UNUSED(arg);
    wy_grpc_reply(call, req);
}

static void rt_closed(void *arg)
{
    tool_t *t = arg;
    uv_close((uv_handle_t *)&t->sigterm, NULL);
    uv_close((uv_handle_t *)&t->sigint, NULL);
}

static void server_stopped(void *arg)
{
    tool_t *t = arg;
    wy_grpc_rt_close(t->rt, rt_closed, t);
}

static void on_signal(uv_signal_t *s, int signum)
{
    tool_t *t = s->data;
    WY_UNUSED(signum);
    if (t->stopping)
        return;
    t->stopping = true;
    wy_log_info("stopping", NULL);
    wy_grpc_server_stop(t->srv, 2000, server_stopped, t);
}

int main(int argc, char **argv)
{
    int want = 0;
    wy_grpc_rt_opts_t ro = {0};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            char *end;
            long p = strtol(argv[++i], &end, 10);
            if (*end || p < 0 || p > 65535) {
                fprintf(stderr, "--port: want 0..65535\n");
                return 2;
            }
            want = (int)p;
        } else if (strcmp(argv[i], "--grpc-mode") == 0 && i + 1 < argc) {
            const char *m = argv[++i];
            if (strcmp(m, "drive") && strcmp(m, "thread")) {
                fprintf(stderr, "--grpc-mode: want thread or drive\n");
                return 2;
            }
            ro.drive = strcmp(m, "drive") == 0;
        } else {
            fprintf(stderr,
                    "usage: wy-grpctest [--port N] [--grpc-mode thread|drive]  (0 = ephemeral)\n");
            return 2;
        }
    }
    wy_log_init("grpctest", WY_LOG_INFO);

    tool_t t = {0};
    uv_loop_t loop;
    uv_loop_init(&loop);
    t.loop = &loop;
    if (wy_grpc_rt_new_opts(&loop, &ro, &t.rt) != WY_OK)
        return 1;
    wy_grpc_server_new(t.rt, NULL, &t.srv);
    wy_grpc_server_register(t.srv, "/wyvern.test.Echo/Echo", &wyvern__envelope__descriptor, echo,
                            NULL);
    wy_grpc_server_set_health(t.srv, "wyvern.test.Echo", true);

    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", want);
    int port = 0;
    const char *err = NULL;
    uv_signal_init(&loop, &t.sigterm);
    uv_signal_init(&loop, &t.sigint);
    t.sigterm.data = t.sigint.data = &t;
    uv_signal_start(&t.sigterm, on_signal, SIGTERM);
    uv_signal_start(&t.sigint, on_signal, SIGINT);
    int rc = wy_grpc_server_start(t.srv, addr, &port, &err);
    if (rc != WY_OK) {
        wy_log_error("cannot start", "error", err, NULL);
        t.stopping = true;
        wy_grpc_server_stop(t.srv, 0, server_stopped, &t);
        wy_grpc_rt_run(t.rt, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        return 1;
    }
    char ready[48];
    snprintf(ready, sizeof ready, "\"grpc_port\":%d", port);
    wy_log_raw(WY_LOG_INFO, "ready", ready);

    wy_grpc_rt_run(t.rt, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0) {
        wy_log_error("loop not empty at exit", NULL);
        return 1;
    }
    wy_log_info("stopped", NULL);
    return 0;
}
