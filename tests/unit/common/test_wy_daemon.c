/* Unit tests of wy_daemon: a test service without dependencies runs in a
 * child process; the parent checks help, bad configuration, the ops
 * endpoints, the ready line, a start failure and the graceful stop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "wy_daemon.h"
#include "wy_log.h"
#include "wy_tick.h"
#include "wy_test.h"

static int start_fails;

/* The service's configuration lives on the daemon (spec.config_size), not in statics. */
typedef struct {
    int64_t unused; /* keeps greeting at a non-zero offset */
    char *greeting;
} testd_cfg_t;

static const wy_cfg_entry_t testd_config[] = {
    {"WY_TESTD_GREETING", WY_CFG_ENUM, "hello", 0, 0, "hello|hi", "Greeting of /greet.",
     WY_CFG_OFF(testd_cfg_t, greeting), false},
};

static void handle_greet(wy_http_req_t *req, void *ud)
{
    const testd_cfg_t *cfg = wy_daemon_config(ud);
    wy_http_respond(req, 200, "text/plain", cfg->greeting, strlen(cfg->greeting));
}

/* Workers (with_workers): the loop sends each worker a "ping" in start();
 * the worker, on its 100 Hz tick, answers "hello" to the loop; when told to
 * stop it posts "bye", which the daemon delivers on the loop at the stop. */
#define TESTD_WORKERS 2
static int with_workers;
static unsigned hellos;

typedef struct {
    wy_mailbox_node_t node;
    unsigned worker;
} testd_msg_t;

static testd_msg_t *testd_msg(unsigned worker)
{
    testd_msg_t *m = wy_calloc(1, sizeof *m);
    m->worker = worker;
    return m;
}

static void on_hello(wy_mailbox_node_t *node, void *ud, int status)
{
    WY_UNUSED(ud);
    if (status == WY_OK)
        hellos++;
    wy_free(WY_CONTAINER_OF(node, testd_msg_t, node));
}

static void on_bye(wy_mailbox_node_t *node, void *ud, int status)
{
    WY_UNUSED(ud);
    testd_msg_t *m = WY_CONTAINER_OF(node, testd_msg_t, node);
    char idx[16];
    snprintf(idx, sizeof idx, "%u", m->worker);
    wy_log_info(status == WY_OK ? "worker said bye" : "bye canceled", "worker", idx, NULL);
    wy_free(m);
}

static void on_ping(wy_mailbox_node_t *node, void *ud, int status)
{
    wy_worker_t *w = ud;
    wy_free(WY_CONTAINER_OF(node, testd_msg_t, node));
    if (status != WY_OK)
        return;
    testd_msg_t *m = testd_msg(wy_worker_index(w));
    if (wy_worker_post(w, &m->node, on_hello) != WY_OK)
        wy_free(m);
}

static void testd_tick(wy_tick_t *t, const wy_tick_info_t *info, void *ud)
{
    WY_UNUSED(info);
    wy_worker_t *w = ud;
    wy_worker_poll(w);
    if (wy_worker_stopping(w))
        wy_tick_stop(t);
}

static void testd_worker_main(wy_worker_t *w)
{
    wy_tick_t t;
    if (wy_tick_init(&t, &(wy_tick_opts_t){.period_ns = 10000000}) != WY_OK)
        return;
    wy_tick_run(&t, testd_tick, w);
    testd_msg_t *m = testd_msg(wy_worker_index(w));
    if (wy_worker_post(w, &m->node, on_bye) != WY_OK)
        wy_free(m);
}

static void handle_workers(wy_http_req_t *req, void *ud)
{
    WY_UNUSED(ud);
    char body[32];
    int n = snprintf(body, sizeof body, "%u", hellos);
    wy_http_respond(req, 200, "text/plain", body, (size_t)n);
}

static int testd_start(wy_daemon_t *d, const char **err)
{
    if (start_fails) {
        *err = "start refused by the test";
        return WY_ESTATE;
    }
    if (with_workers) {
        wy_workers_opts_t wo = {.name = "testd", .count = TESTD_WORKERS, .main = testd_worker_main};
        int rc = wy_daemon_add_workers(d, &wo);
        if (rc == WY_OK && wy_daemon_add_workers(d, &wo) != WY_ESTATE)
            rc = WY_EINTERNAL; /* only once */
        for (unsigned i = 0; rc == WY_OK && i < TESTD_WORKERS; i++) {
            testd_msg_t *m = testd_msg(i);
            rc = wy_workers_send(wy_daemon_workers(d), i, &m->node, on_ping);
        }
        if (rc != WY_OK) {
            *err = "workers refused";
            return rc;
        }
        wy_http_route(wy_daemon_ops(d), "GET", "/workers", handle_workers, NULL);
    }
    return wy_http_route(wy_daemon_ops(d), "GET", "/greet", handle_greet, d);
}

static const wy_daemon_spec_t testd_spec = {
    .svc = "testd",
    .grpc_service = "wyvern.testd.Testd",
    .ops_port = 0,
    .grpc_port = 0,
    .config = testd_config,
    .nconfig = 1,
    .config_size = sizeof(testd_cfg_t),
    .start = testd_start,
};

/* Subscription tables and helpers the daemon must refuse at start (exit 1, saying why). */
static void no_event(wy_daemon_t *d, wy_kafka_msg_t *msg, const Wyvern__Envelope *env)
{
    wy_daemon_event_done(d, msg, env);
}

static const char *const some_types[] = {"test.event", NULL};
static const wy_daemon_sub_t twice_subs[] = {
    {.topic = "wy.test", .types = some_types, .handler = no_event},
    {.topic = "wy.test", .mode = WY_SUB_BROADCAST, .types = some_types, .handler = no_event},
};
static const wy_daemon_sub_t no_types_subs[] = {
    {.topic = "wy.test", .handler = no_event},
};

static const wy_daemon_spec_t twice_spec = {.svc = "testd",
                                            .grpc_service = "wyvern.testd.Testd",
                                            .deps = WY_DEP_KAFKA,
                                            .subs = twice_subs,
                                            .nsubs = 2};
static const wy_daemon_spec_t no_types_spec = {.svc = "testd",
                                               .grpc_service = "wyvern.testd.Testd",
                                               .deps = WY_DEP_KAFKA,
                                               .subs = no_types_subs,
                                               .nsubs = 1};
static const wy_daemon_spec_t no_kafka_spec = {
    .svc = "testd", .grpc_service = "wyvern.testd.Testd", .subs = no_types_subs, .nsubs = 1};

static const wy_daemon_spec_t helpers_without_pg_spec = {
    .svc = "testd", .grpc_service = "wyvern.testd.Testd", .helpers = WY_HELPER_CONSUMED};

/* spec.configure: the service's own data checked after the variables (wy-world's zones). */
static int bad_data_configure(void *cfg, const char **err)
{
    WY_UNUSED(cfg);
    *err = "data/testd.json: size: missing field";
    return WY_EINVAL;
}

static const wy_daemon_spec_t bad_data_spec = {.svc = "testd",
                                               .grpc_service = "wyvern.testd.Testd",
                                               .config = testd_config,
                                               .nconfig = 1,
                                               .config_size = sizeof(testd_cfg_t),
                                               .configure = bad_data_configure,
                                               .start = testd_start};

/* spec.unconfigure: what configure loaded into the struct (half of it, when configure failed)
 * is released when the daemon frees the struct; the child tells the parent what it saw. */
static int loading_configure(void *cfg, const char **err)
{
    testd_cfg_t *c = cfg;
    c->unused = 42; /* "loaded" */
    *err = "data/testd.json: size: missing field";
    return WY_EINVAL;
}

static void loading_unconfigure(void *cfg)
{
    testd_cfg_t *c = cfg;
    fprintf(stderr, "released %lld\n", (long long)c->unused);
    c->unused = 0;
}

static const wy_daemon_spec_t unconfigure_spec = {.svc = "testd",
                                                  .grpc_service = "wyvern.testd.Testd",
                                                  .config = testd_config,
                                                  .nconfig = 1,
                                                  .config_size = sizeof(testd_cfg_t),
                                                  .configure = loading_configure,
                                                  .unconfigure = loading_unconfigure,
                                                  .start = testd_start};

/* The spec the next child runs. */
static const wy_daemon_spec_t *child_spec = &testd_spec;

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t n = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &n);
    close(fd);
    return ntohs(a.sin_port);
}

/* Runs the daemon in a child with argv and extra environment ("K=V", NULL
 * terminated); its stdout and stderr go to files read by the parent. */
typedef struct {
    pid_t pid;
    char out[64], err[64];
} child_t;

static void child_start(child_t *c, const char *arg1, const char *arg2, const char *const *env)
{
    snprintf(c->out, sizeof c->out, "/tmp/wy-testd-out-%d", (int)getpid());
    snprintf(c->err, sizeof c->err, "/tmp/wy-testd-err-%d", (int)getpid());
    fflush(NULL);
    c->pid = fork();
    assert_true(c->pid >= 0);
    if (c->pid == 0) {
        if (!freopen(c->out, "w", stdout) || !freopen(c->err, "w", stderr))
            _exit(99);
        for (const char *const *e = env; e && *e; e++)
            putenv((char *)*e);
        char *argv[] = {"wy-testd", (char *)arg1, (char *)arg2, NULL};
        int argc = arg2 ? 3 : arg1 ? 2 : 1;
        int rc = wy_daemon_main(argc, argv, child_spec);
        fflush(NULL); /* _exit skips stdio's flush */
        _exit(rc);
    }
}

static char *slurp(const char *path);

/* Exit status of the child (128 + signal when killed); its stderr is printed
 * when the status is not 0, so a failing assertion shows why. */
static int child_wait(child_t *c)
{
    int st;
    assert_int_equal(waitpid(c->pid, &st, 0), c->pid);
    int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (rc != 0)
        fprintf(stderr, "child exited %d; its stderr:\n%s\n", rc, slurp(c->err));
    return rc;
}

static char *slurp(const char *path)
{
    static char buf[1 << 16];
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    return buf;
}

static void child_clean(child_t *c)
{
    unlink(c->out);
    unlink(c->err);
}

/* One HTTP/1.0 GET; returns the status (0 when nothing answers) and the body in body. */
static int http_get(int port, const char *path, char *body, size_t bodysz)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return 0;
    }
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\n\r\n", path);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return 0;
    }
    char resp[1 << 15];
    size_t len = 0;
    ssize_t r;
    while (len < sizeof resp - 1 && (r = read(fd, resp + len, sizeof resp - 1 - len)) > 0)
        len += (size_t)r;
    close(fd);
    resp[len] = '\0';
    int status = 0;
    sscanf(resp, "HTTP/1.%*d %d", &status);
    const char *b = strstr(resp, "\r\n\r\n");
    snprintf(body, bodysz, "%s", b ? b + 4 : "");
    return status;
}

static int wait_http(int port, const char *path, char *body, size_t bodysz)
{
    for (int i = 0; i < 500; i++) { /* up to 10 s: only a guard */
        int st = http_get(port, path, body, bodysz);
        if (st)
            return st;
        usleep(20000);
    }
    return 0;
}

static void test_help_lists_shared_and_own_variables(void **state)
{
    (void)state;
    child_t c = {0};
    child_start(&c, "--help", "--json", NULL);
    assert_int_equal(child_wait(&c), 0);
    const char *out = slurp(c.out);
    assert_non_null(strstr(out, "\"service\": \"testd\""));
    assert_non_null(strstr(out, "WY_TESTD_OPS_PORT"));
    assert_non_null(strstr(out, "WY_TESTD_GREETING"));
    assert_non_null(strstr(out, "WY_LOG_LEVEL"));
    assert_null(strstr(out, "WY_REDIS_URL")); /* no Redis dependency */
    child_clean(&c);
}

static void test_bad_value_exits_2_naming_the_variable(void **state)
{
    (void)state;
    child_t c = {0};
    const char *env[] = {"WY_TESTD_GREETING=yo", NULL};
    child_start(&c, NULL, NULL, env);
    assert_int_equal(child_wait(&c), 2);
    const char *err = slurp(c.err);
    assert_non_null(strstr(err, "WY_TESTD_GREETING"));
    assert_non_null(strstr(err, "yo"));
    child_clean(&c);
}

static void test_configure_failure_exits_2_with_its_message(void **state)
{
    (void)state;
    child_t c = {0};
    child_spec = &bad_data_spec;
    child_start(&c, NULL, NULL, NULL);
    child_spec = &testd_spec;
    assert_int_equal(child_wait(&c), 2);
    assert_string_equal(slurp(c.err),
                        "wy-testd: bad configuration: data/testd.json: size: missing field\n");
    child_clean(&c);
}

static void test_unconfigure_releases_what_configure_loaded(void **state)
{
    (void)state;
    child_t c = {0};
    child_spec = &unconfigure_spec;
    child_start(&c, NULL, NULL, NULL);
    assert_int_equal(child_wait(&c), 2);
    assert_string_equal(slurp(c.err), "wy-testd: bad configuration: data/testd.json: size: "
                                      "missing field\nreleased 42\n");
    child_clean(&c);
    /* --help never configures: unconfigure still runs, on the zeroed struct. */
    child_t h = {0};
    child_start(&h, "--help", NULL, NULL);
    child_spec = &testd_spec;
    assert_int_equal(child_wait(&h), 0);
    assert_string_equal(slurp(h.err), "released 0\n");
    child_clean(&h);
}

static void test_unknown_argument_exits_2(void **state)
{
    (void)state;
    child_t c = {0};
    child_start(&c, "--bogus", NULL, NULL);
    assert_int_equal(child_wait(&c), 2);
    child_clean(&c);
}

static void test_serves_ops_endpoints_and_stops_on_sigterm(void **state)
{
    (void)state;
    child_t c = {0};
    static char ops[64], grpc[64];
    int port = free_port();
    snprintf(ops, sizeof ops, "WY_TESTD_OPS_PORT=%d", port);
    snprintf(grpc, sizeof grpc, "WY_TESTD_GRPC_PORT=%d", free_port());
    const char *env[] = {ops, grpc, "WY_BIND_HOST=127.0.0.1", "WY_TESTD_GREETING=hi", NULL};
    child_start(&c, NULL, NULL, env);
    char body[4096];
    assert_int_equal(wait_http(port, "/healthz", body, sizeof body), 200);
    assert_non_null(strstr(body, "\"alive\""));
    /* No dependencies: ready once the first readiness check ran. */
    int st = 0;
    for (int i = 0; i < 250 && st != 200; i++) {
        st = http_get(port, "/readyz", body, sizeof body);
        if (st != 200)
            usleep(20000);
    }
    assert_int_equal(st, 200);
    assert_string_equal(body, "{\"status\":\"healthy\"}");
    assert_int_equal(http_get(port, "/greet", body, sizeof body), 200);
    assert_string_equal(body, "hi");
    assert_int_equal(http_get(port, "/metrics", body, sizeof body), 200);
    assert_non_null(strstr(body, "# TYPE wy_testd_ready gauge"));
    assert_int_equal(http_get(port, "/nope", body, sizeof body), 404);
    assert_int_equal(kill(c.pid, SIGTERM), 0);
    assert_int_equal(child_wait(&c), 0);
    const char *err = slurp(c.err);
    assert_non_null(strstr(err, "\"msg\":\"ready\""));
    assert_non_null(strstr(err, "\"msg\":\"stopping\",\"reason\":\"SIGTERM\""));
    assert_non_null(strstr(err, "\"msg\":\"stopped\""));
    child_clean(&c);
}

static void test_start_failure_exits_1(void **state)
{
    (void)state;
    child_t c = {0};
    static char ops[64];
    snprintf(ops, sizeof ops, "WY_TESTD_OPS_PORT=%d", free_port());
    const char *env[] = {ops, "WY_TESTD_GRPC_PORT=0", "WY_BIND_HOST=127.0.0.1", NULL};
    start_fails = 1;
    child_start(&c, NULL, NULL, env);
    start_fails = 0;
    assert_int_equal(child_wait(&c), 1);
    assert_non_null(strstr(slurp(c.err), "start refused by the test"));
    child_clean(&c);
}

/* Workers start after start(), answer the loop through the mailboxes, and
 * are stopped and joined on SIGTERM; what they post while stopping is still
 * delivered on the loop. */
static void test_workers_start_talk_and_stop(void **state)
{
    (void)state;
    child_t c = {0};
    static char ops[64];
    int port = free_port();
    snprintf(ops, sizeof ops, "WY_TESTD_OPS_PORT=%d", port);
    const char *env[] = {ops, "WY_TESTD_GRPC_PORT=0", "WY_BIND_HOST=127.0.0.1", NULL};
    with_workers = 1;
    child_start(&c, NULL, NULL, env);
    with_workers = 0;
    char body[256] = "";
    assert_int_equal(wait_http(port, "/workers", body, sizeof body), 200);
    for (int i = 0; i < 500 && strcmp(body, "2") != 0; i++) { /* up to 10 s: only a guard */
        usleep(20000);
        assert_int_equal(http_get(port, "/workers", body, sizeof body), 200);
    }
    assert_string_equal(body, "2");
    static char metrics[1 << 15];
    assert_int_equal(http_get(port, "/metrics", metrics, sizeof metrics), 200);
    const char *want[] = {"wy_testd_worker_messages_total{queue=\"loop\"} 2\n",
                          "wy_testd_worker_messages_total{queue=\"inbox\"} 2\n",
                          "wy_testd_worker_messages_refused_total{queue=\"loop\"} 0\n",
                          "# TYPE wy_testd_worker_queue_high_water gauge", NULL};
    wt_assert_contains(metrics, want);
    assert_int_equal(kill(c.pid, SIGTERM), 0);
    assert_int_equal(child_wait(&c), 0);
    const char *err = slurp(c.err);
    assert_non_null(strstr(err, "\"msg\":\"worker said bye\",\"worker\":\"0\""));
    assert_non_null(strstr(err, "\"msg\":\"worker said bye\",\"worker\":\"1\""));
    assert_null(strstr(err, "bye canceled"));
    assert_non_null(strstr(err, "\"msg\":\"stopped\""));
    child_clean(&c);
}

static void test_port_in_use_exits_1(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 1), 0);
    socklen_t n = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &n);
    static char ops[64];
    snprintf(ops, sizeof ops, "WY_TESTD_OPS_PORT=%d", ntohs(a.sin_port));
    const char *env[] = {ops, "WY_TESTD_GRPC_PORT=0", "WY_BIND_HOST=127.0.0.1", NULL};
    child_t c = {0};
    child_start(&c, NULL, NULL, env);
    assert_int_equal(child_wait(&c), 1);
    assert_non_null(strstr(slurp(c.err), "ops HTTP port"));
    close(fd);
    child_clean(&c);
}

static void test_bad_kafka_table_or_helpers_exit_1(void **state)
{
    (void)state;
    static const struct {
        const wy_daemon_spec_t *spec;
        const char *why;
    } cases[] = {
        {&twice_spec, "subscription 1 (wy.test): topic listed twice"},
        {&no_types_spec, "subscription 0 (wy.test): no event types"},
        {&no_kafka_spec, "subscriptions need WY_DEP_KAFKA"},
        {&helpers_without_pg_spec, "consumed needs WY_DEP_PG"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        child_t c = {0};
        static char ops[64];
        snprintf(ops, sizeof ops, "WY_TESTD_OPS_PORT=%d", free_port());
        const char *env[] = {ops, "WY_TESTD_GRPC_PORT=0", "WY_BIND_HOST=127.0.0.1", NULL};
        child_spec = cases[i].spec;
        child_start(&c, NULL, NULL, env);
        child_spec = &testd_spec;
        assert_int_equal(child_wait(&c), 1);
        const char *err = slurp(c.err);
        if (!strstr(err, cases[i].why))
            fail_msg("\"%s\" not in:\n%s", cases[i].why, err);
        child_clean(&c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_lists_shared_and_own_variables),
        cmocka_unit_test(test_bad_value_exits_2_naming_the_variable),
        cmocka_unit_test(test_configure_failure_exits_2_with_its_message),
        cmocka_unit_test(test_unconfigure_releases_what_configure_loaded),
        cmocka_unit_test(test_unknown_argument_exits_2),
        cmocka_unit_test(test_serves_ops_endpoints_and_stops_on_sigterm),
        cmocka_unit_test(test_start_failure_exits_1),
        cmocka_unit_test(test_port_in_use_exits_1),
        cmocka_unit_test(test_bad_kafka_table_or_helpers_exit_1),
        cmocka_unit_test(test_workers_start_talk_and_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
