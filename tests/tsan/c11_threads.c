/* Linked into ThreadSanitizer builds only (Makefile: SAN with "thread"): C11
 * <threads.h> on top of the pthread functions TSan intercepts.
 *
 * Why: Debian's librdkafka runs its threads with C11 thrd_create and locks with
 * mtx_lock/cnd_wait. glibc implements those by calling its pthread internals
 * directly (__pthread_create_2_1, ...), not through the pthread_* symbols, and
 * GCC 12's libtsan has no C11 thread interceptors. A thread started that way is
 * unknown to TSan: it has no TSan thread state, so its first intercepted malloc
 * dereferences a NULL allocator cache and the daemon dies with SIGSEGV and no
 * report (wy-world and wy-game at start: rdkafka's broker thread, in
 * getaddrinfo). And the locks librdkafka hands messages through would be
 * invisible, so every message it passes to our thread would read as a race.
 *
 * The functions below interpose on glibc's (the executable's definitions win at
 * dynamic link) and map each onto its pthread twin, which glibc's types share
 * the layout of (mtx_t is a pthread_mutex_t, cnd_t a pthread_cond_t, once_flag
 * a pthread_once_t). The functions without synchronisation (thrd_current,
 * thrd_equal, thrd_sleep, thrd_yield, tss_*) are left to glibc. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <threads.h>

_Static_assert(sizeof(mtx_t) == sizeof(pthread_mutex_t), "mtx_t is a pthread_mutex_t");
_Static_assert(sizeof(cnd_t) == sizeof(pthread_cond_t), "cnd_t is a pthread_cond_t");
_Static_assert(sizeof(once_flag) == sizeof(pthread_once_t), "once_flag is a pthread_once_t");

static int c11_status(int e)
{
    switch (e) {
    case 0:
        return thrd_success;
    case ENOMEM:
        return thrd_nomem;
    case ETIMEDOUT:
        return thrd_timedout;
    case EBUSY:
        return thrd_busy;
    default:
        return thrd_error;
    }
}

typedef struct {
    thrd_start_t fn;
    void *arg;
} c11_start_t;

static void *c11_trampoline(void *p)
{
    c11_start_t s = *(c11_start_t *)p;
    free(p);
    return (void *)(intptr_t)s.fn(s.arg);
}

int thrd_create(thrd_t *thr, thrd_start_t fn, void *arg)
{
    c11_start_t *s = malloc(sizeof *s);
    if (!s)
        return thrd_nomem;
    s->fn = fn;
    s->arg = arg;
    int e = pthread_create(thr, NULL, c11_trampoline, s);
    if (e)
        free(s);
    return c11_status(e);
}

int thrd_join(thrd_t thr, int *res)
{
    void *r = NULL;
    int e = pthread_join(thr, &r);
    if (e == 0 && res)
        *res = (int)(intptr_t)r;
    return c11_status(e);
}

int thrd_detach(thrd_t thr)
{
    return c11_status(pthread_detach(thr));
}

_Noreturn void thrd_exit(int res)
{
    pthread_exit((void *)(intptr_t)res);
}

int mtx_init(mtx_t *m, int type)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    if (type & mtx_recursive)
        pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    int e = pthread_mutex_init((pthread_mutex_t *)m, &a);
    pthread_mutexattr_destroy(&a);
    return c11_status(e);
}

int mtx_lock(mtx_t *m)
{
    return c11_status(pthread_mutex_lock((pthread_mutex_t *)m));
}

int mtx_trylock(mtx_t *m)
{
    return c11_status(pthread_mutex_trylock((pthread_mutex_t *)m));
}

int mtx_timedlock(mtx_t *restrict m, const struct timespec *restrict ts)
{
    return c11_status(pthread_mutex_timedlock((pthread_mutex_t *)m, ts));
}

int mtx_unlock(mtx_t *m)
{
    return c11_status(pthread_mutex_unlock((pthread_mutex_t *)m));
}

void mtx_destroy(mtx_t *m)
{
    pthread_mutex_destroy((pthread_mutex_t *)m);
}

int cnd_init(cnd_t *c)
{
    return c11_status(pthread_cond_init((pthread_cond_t *)c, NULL));
}

int cnd_signal(cnd_t *c)
{
    return c11_status(pthread_cond_signal((pthread_cond_t *)c));
}

int cnd_broadcast(cnd_t *c)
{
    return c11_status(pthread_cond_broadcast((pthread_cond_t *)c));
}

int cnd_wait(cnd_t *c, mtx_t *m)
{
    return c11_status(pthread_cond_wait((pthread_cond_t *)c, (pthread_mutex_t *)m));
}

int cnd_timedwait(cnd_t *restrict c, mtx_t *restrict m, const struct timespec *restrict ts)
{
    return c11_status(pthread_cond_timedwait((pthread_cond_t *)c, (pthread_mutex_t *)m, ts));
}

void cnd_destroy(cnd_t *c)
{
    pthread_cond_destroy((pthread_cond_t *)c);
}

void call_once(once_flag *flag, void (*fn)(void))
{
    pthread_once((pthread_once_t *)flag, fn);
}
