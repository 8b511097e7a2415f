/* The lobby's files depend on each other one way only (services/lobby/README.md "Code map"):
 * reads the #include "..." lines of the .c and .h files of services/lobby, takes x.c and
 * x.h as one module x, and fails naming the circle if the module graph has one. So that
 * the includes show the real dependencies, every header but a types-only *-t.h belongs to
 * a module with a .c (no catch-all internal header declaring every module's functions).
 * The README's "Code map" must name every module. Run from the repository's top
 * directory (tests/run does), or set WY_LOBBY_SRC to the folder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/wy_test.h"

#define MAX_MODS     64
#define NAME_MAX_LEN 64

typedef struct {
    int n;
    char name[MAX_MODS][NAME_MAX_LEN];
    bool has_c[MAX_MODS];
    bool edge[MAX_MODS][MAX_MODS]; /* edge[a][b]: a file of module a includes module b */
    int nedges;
} graph_t;

/* The module of a file name ("wire.c" -> "wire"); NULL for other files. */
static bool module_of(const char *file, char *out, size_t cap)
{
    size_t l = strlen(file);
    if (l < 3 || file[l - 2] != '.' || (file[l - 1] != 'c' && file[l - 1] != 'h') || l - 2 >= cap)
        return false;
    memcpy(out, file, l - 2);
    out[l - 2] = '\0';
    return true;
}

static int find(const graph_t *g, const char *name)
{
    for (int i = 0; i < g->n; i++)
        if (strcmp(g->name[i], name) == 0)
            return i;
    return -1;
}

static int add(graph_t *g, const char *name)
{
    int i = find(g, name);
    if (i >= 0)
        return i;
    assert_true(g->n < MAX_MODS);
    snprintf(g->name[g->n], NAME_MAX_LEN, "%s", name);
    return g->n++;
}

/* Builds the module graph of the .c/.h files in dir; includes of files that are not in dir
 * (libs/common, generated headers, system headers) are not edges. */
static void load(graph_t *g, const char *dir)
{
    memset(g, 0, sizeof *g);
    DIR *d = opendir(dir);
    if (!d)
        fail_msg("cannot open %s: run from the repository's top directory or set WY_LOBBY_SRC",
                 dir);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char mod[NAME_MAX_LEN];
        if (module_of(e->d_name, mod, sizeof mod)) {
            int i = add(g, mod);
            if (e->d_name[strlen(e->d_name) - 1] == 'c')
                g->has_c[i] = true;
        }
    }
    rewinddir(d);
    while ((e = readdir(d)) != NULL) {
        char mod[NAME_MAX_LEN], path[1024], line[512];
        if (!module_of(e->d_name, mod, sizeof mod))
            continue;
        int from = find(g, mod);
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        while (fgets(line, sizeof line, f)) {
            char inc[256], to_mod[NAME_MAX_LEN];
            const char *p = line;
            while (*p == ' ' || *p == '\t')
                p++;
            if (*p++ != '#')
                continue;
            while (*p == ' ' || *p == '\t')
                p++;
            if (sscanf(p, "include \"%255[^\"]\"", inc) != 1 ||
                !module_of(inc, to_mod, sizeof to_mod))
                continue;
            int to = find(g, to_mod);
            if (to < 0 || to == from)
                continue;
            snprintf(path, sizeof path, "%s/%s", dir, inc);
            struct stat st;
            if (stat(path, &st) != 0) /* e.g. lobby.pb-c.h lives in build/gen */
                continue;
            if (!g->edge[from][to])
                g->nedges++;
            g->edge[from][to] = true;
        }
        fclose(f);
    }
    closedir(d);
}

/* Depth-first search; on a circle writes it ("a -> b -> a") to out and returns true. */
static bool dfs(const graph_t *g, int v, int *color, int *stack, int depth, char *out, size_t cap)
{
    color[v] = 1;
    stack[depth] = v;
    for (int w = 0; w < g->n; w++) {
        if (!g->edge[v][w])
            continue;
        if (color[w] == 1) {
            int at = 0;
            while (stack[at] != w)
                at++;
            size_t len = 0;
            for (int i = at; i <= depth; i++)
                len += (size_t)snprintf(out + len, len < cap ? cap - len : 0, "%s -> ",
                                        g->name[stack[i]]);
            snprintf(out + len, len < cap ? cap - len : 0, "%s", g->name[w]);
            return true;
        }
        if (color[w] == 0 && dfs(g, w, color, stack, depth + 1, out, cap))
            return true;
    }
    color[v] = 2;
    return false;
}

static bool find_circle(const graph_t *g, char *out, size_t cap)
{
    int color[MAX_MODS] = {0}, stack[MAX_MODS];
    for (int v = 0; v < g->n; v++)
        if (color[v] == 0 && dfs(g, v, color, stack, 0, out, cap))
            return true;
    return false;
}

static void remove_dir(const char *dir, const char *const *names)
{
    char path[512];
    for (; *names; names++) {
        snprintf(path, sizeof path, "%s/%s", dir, *names);
        unlink(path);
    }
    rmdir(dir);
}

/* The checker itself: a circle through a .c and the other module's .h is found, an
 * include of a file outside the folder is not an edge, a one-way chain passes. */
static void test_checker_finds_a_circle(void **state)
{
    (void)state;
    char dir[] = "/tmp/wy-layers-XXXXXX";
    assert_non_null(mkdtemp(dir));
    wt_write_file(dir, "a.h", "#include \"b-t.h\"\n");
    wt_write_file(dir, "b-t.h", "/* types */\n");
    wt_write_file(dir, "a.c", "#include \"a.h\"\n#include \"b.h\"\n#include \"wy_core.h\"\n");
    wt_write_file(dir, "b.h", "#include \"b-t.h\"\n");
    wt_write_file(dir, "b.c", "#include \"b.h\"\n");
    graph_t g;
    char circle[512] = "";
    load(&g, dir);
    assert_int_equal(g.n, 3);
    assert_false(find_circle(&g, circle, sizeof circle));
    wt_write_file(dir, "b.c", "#include \"b.h\"\n  #  include \"a.h\" /* back up */\n");
    load(&g, dir);
    assert_true(find_circle(&g, circle, sizeof circle));
    assert_non_null(strstr(circle, "a -> b -> a") ? circle : strstr(circle, "b -> a -> b"));
    const char *const names[] = {"a.h", "b-t.h", "a.c", "b.h", "b.c", NULL};
    remove_dir(dir, names);
}

static void test_lobby_has_no_circle(void **state)
{
    (void)state;
    const char *dir = getenv("WY_LOBBY_SRC");
    graph_t g;
    char circle[1024] = "";
    load(&g, dir && *dir ? dir : "services/lobby");
    /* Not vacuous: the folder was found and its modules include each other. */
    assert_true(find(&g, "lobby") >= 0 && find(&g, "main") >= 0);
    assert_true(g.n >= 8);
    assert_true(g.nedges >= g.n);
    for (int i = 0; i < g.n; i++) {
        size_t l = strlen(g.name[i]);
        bool types_only = l > 2 && strcmp(g.name[i] + l - 2, "-t") == 0;
        if (!g.has_c[i] && !types_only)
            fail_msg("services/lobby/%s.h has no %s.c: a header declares one module's functions "
                     "(types shared by many go to a *-t.h)",
                     g.name[i], g.name[i]);
    }
    if (find_circle(&g, circle, sizeof circle))
        fail_msg("services/lobby has a file-level dependency circle: %s", circle);
}

/* README "Code map" names every module of the folder, and only those. */
static void test_code_map_names_every_module(void **state)
{
    (void)state;
    const char *dir = getenv("WY_LOBBY_SRC");
    dir = dir && *dir ? dir : "services/lobby";
    graph_t g;
    load(&g, dir);
    char path[1024];
    snprintf(path, sizeof path, "%s/README.md", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    bool in_map = false, listed[MAX_MODS] = {false};
    char line[1024];
    int nlisted = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "## ", 3) == 0)
            in_map = strncmp(line, "## Code map", 11) == 0;
        if (!in_map || line[0] != '|')
            continue;
        /* Every `name.c` / `name.h` in a table row. */
        for (char *p = strchr(line, '`'); p; p = strchr(p + 1, '`')) {
            char *end = strchr(p + 1, '`');
            char file[NAME_MAX_LEN + 2], mod[NAME_MAX_LEN];
            if (!end)
                break;
            size_t l = (size_t)(end - p - 1);
            if (l < sizeof file) {
                memcpy(file, p + 1, l);
                file[l] = '\0';
                if (strspn(file, "abcdefghijklmnopqrstuvwxyz_-.") == l &&
                    module_of(file, mod, sizeof mod)) {
                    int i = find(&g, mod);
                    if (i < 0)
                        fail_msg("README Code map names %s, which is not in %s", file, dir);
                    if (!listed[i])
                        nlisted++;
                    listed[i] = true;
                }
            }
            p = end;
        }
    }
    fclose(f);
    for (int i = 0; i < g.n; i++)
        if (!listed[i])
            fail_msg("%s/README.md \"Code map\" does not name module %s", dir, g.name[i]);
    assert_int_equal(nlisted, g.n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checker_finds_a_circle),
        cmocka_unit_test(test_lobby_has_no_circle),
        cmocka_unit_test(test_code_map_names_every_module),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
