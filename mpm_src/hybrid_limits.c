/* hybrid_limits.c: ServerLimit, ThreadLimit, ThreadsPerChild,
 * MaxRequestWorkers, StartServers and the spare targets, checked against
 * each other in one place and one order.
 *
 * Pure: no httpd, no globals; every change is reported through `warn`
 * (hybrid_config.c sends it to the console or the error log).
 * Called from: check_config, in the parent; and from test/unit.
 */

#include <stdarg.h>
#include <stdio.h>

#include "hybrid_limits.h"

typedef struct {
    hyb_limits_warn_fn fn;
    void *ctx;
} warner;

static void say(const warner *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void say(const warner *w, const char *fmt, ...)
{
    char buf[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (w->fn) {
        w->fn(w->ctx, buf);
    }
}

/* The scoreboard is sized once, at the first start. */
static void keep_first_value(const warner *w, const char *name, int *value,
                             int first)
{
    if (first && *value != first) {
        say(w, "changing %s to %d from original value of %d not allowed "
            "during restart", name, *value, first);
        *value = first;
    }
}

static void clamp_sizes(hyb_limits *l, int max_server_limit, const warner *w)
{
    int tpc1 = l->threads_per_child == 1;

    if (!l->set_server_limit) {
        l->server_limit = tpc1 ? HYB_DEFAULT_PREFORK_LIMIT
                               : HYB_DEFAULT_SERVER_LIMIT;
    }
    if (!l->set_thread_limit) {
        l->thread_limit = tpc1 ? 1 : HYB_DEFAULT_THREAD_LIMIT;
        if (l->thread_limit < l->threads_per_child) {
            l->thread_limit = l->threads_per_child;
        }
    }
    if (l->server_limit > max_server_limit) {
        say(w, "ServerLimit of %d exceeds the compile-time limit of %d, "
            "lowering ServerLimit to %d", l->server_limit, max_server_limit,
            max_server_limit);
        l->server_limit = max_server_limit;
    }
    keep_first_value(w, "ServerLimit", &l->server_limit,
                     l->first_server_limit);
    keep_first_value(w, "ThreadLimit", &l->thread_limit,
                     l->first_thread_limit);
    if (l->threads_per_child > l->thread_limit) {
        say(w, "ThreadsPerChild of %d exceeds ThreadLimit of %d, "
            "decreasing to match", l->threads_per_child, l->thread_limit);
        l->threads_per_child = l->thread_limit;
    }
}

static void clamp_workers(hyb_limits *l, const warner *w)
{
    int tpc = l->threads_per_child;
    int most = l->server_limit * tpc;

    if (!l->set_max_workers) {
        l->max_workers = HYB_DEFAULT_MAX_WORKERS < most
                         ? HYB_DEFAULT_MAX_WORKERS : most;
        l->max_workers -= l->max_workers % tpc;
        if (l->max_workers < tpc) {
            l->max_workers = tpc;
        }
    }
    else if (l->max_workers < tpc) {
        say(w, "MaxRequestWorkers of %d is less than ThreadsPerChild of %d, "
            "increasing to %d", l->max_workers, tpc, tpc);
        l->max_workers = tpc;
    }
    else if (l->max_workers > most) {
        say(w, "MaxRequestWorkers of %d would require %d servers and would "
            "exceed ServerLimit of %d, decreasing to %d", l->max_workers,
            (l->max_workers + tpc - 1) / tpc, l->server_limit, most);
        l->max_workers = most;
    }
    else if (l->max_workers % tpc) {
        say(w, "MaxRequestWorkers of %d is not an integer multiple of "
            "ThreadsPerChild of %d, decreasing to nearest multiple %d",
            l->max_workers, tpc, l->max_workers - l->max_workers % tpc);
        l->max_workers -= l->max_workers % tpc;
    }
    l->daemons_limit = l->max_workers / tpc;

    if (!l->set_start) {
        l->start_servers = tpc == 1 ? 5 : 3;
    }
    if (l->start_servers > l->daemons_limit) {
        if (l->set_start) {
            say(w, "StartServers of %d exceeds MaxRequestWorkers / "
                "ThreadsPerChild = %d, starting %d", l->start_servers,
                l->daemons_limit, l->daemons_limit);
        }
        l->start_servers = l->daemons_limit;
    }
}

static void clamp_spares(hyb_limits *l, const warner *w)
{
    int tpc = l->threads_per_child;
    int prefork_names = tpc == 1 && l->set_spare_servers;

    if (prefork_names) {
        /* prefork meaning: idle children == idle threads */
        l->spare_min = l->min_spare_servers ? l->min_spare_servers : 5;
        l->spare_max = l->max_spare_servers ? l->max_spare_servers : 10;
    }
    else {
        if (l->set_spare_servers) {
            say(w, "MinSpareServers/MaxSpareServers only apply with "
                "ThreadsPerChild 1 and are ignored with ThreadsPerChild %d; "
                "use MinSpareThreads/MaxSpareThreads", tpc);
        }
        l->spare_min = l->set_min_spare_threads ? l->min_spare_threads
                                                : (tpc == 1 ? 5 : 3 * tpc);
        l->spare_max = l->set_max_spare_threads ? l->max_spare_threads
                                                : (tpc == 1 ? 10 : 10 * tpc);
    }
    if (l->spare_min < 1) {
        l->spare_min = 1;
    }
    if (l->spare_min > l->max_workers) {
        l->spare_min = l->max_workers;
    }
    /* Retiring one child must not drop idle threads below the minimum,
     * or the server would start and stop a child every tick. */
    if (l->spare_max < l->spare_min + tpc) {
        if (l->set_max_spare_threads || prefork_names) {
            say(w, "%s of %d is less than %s + ThreadsPerChild = %d, "
                "increasing to %d",
                prefork_names ? "MaxSpareServers" : "MaxSpareThreads",
                l->spare_max,
                prefork_names ? "MinSpareServers" : "MinSpareThreads",
                l->spare_min + tpc, l->spare_min + tpc);
        }
        l->spare_max = l->spare_min + tpc;
    }
}

void hyb_limits_clamp(hyb_limits *l, int max_server_limit,
                      hyb_limits_warn_fn warn, void *ctx)
{
    warner w = { warn, ctx };

    clamp_sizes(l, max_server_limit, &w);
    clamp_workers(l, &w);
    clamp_spares(l, &w);
}
