/* hybrid_limits.h: how the sizing directives constrain each other.
 *
 * A pure computation, kept apart from the directive table so that
 * test/unit can drive it without httpd: raw values in (with which of them
 * the config file set), clamped values out, and one call of `warn` per
 * value that was changed, with the message the operator sees.
 */
#ifndef HYBRID_LIMITS_H
#define HYBRID_LIMITS_H

#define HYB_DEFAULT_THREADS_PER_CHILD 25
#define HYB_DEFAULT_SERVER_LIMIT      16
#define HYB_DEFAULT_PREFORK_LIMIT     256
#define HYB_DEFAULT_THREAD_LIMIT      64
#define HYB_DEFAULT_MAX_WORKERS       150

typedef struct hyb_limits {
    /* as configured (meaningful only where the set_ flag says so) */
    int start_servers;
    int server_limit;
    int thread_limit;
    int threads_per_child;
    int max_workers;          /* MaxRequestWorkers */
    int min_spare_threads;
    int max_spare_threads;
    int min_spare_servers;    /* prefork meaning, ThreadsPerChild 1 only */
    int max_spare_servers;
    unsigned set_start:1, set_server_limit:1, set_thread_limit:1,
             set_max_workers:1, set_min_spare_threads:1,
             set_max_spare_threads:1, set_spare_servers:1;
    /* fixed at the first start (the scoreboard's size); 0 before it */
    int first_server_limit;
    int first_thread_limit;
    /* derived by hyb_limits_clamp */
    int daemons_limit;        /* max_workers / threads_per_child */
    int spare_min;            /* idle-thread targets the parent keeps */
    int spare_max;
} hyb_limits;

typedef void (*hyb_limits_warn_fn)(void *ctx, const char *msg);

/* Fills in every default that depends on another directive, clamps each
 * value to what the others and the compile-time caps allow, and derives
 * daemons_limit and the spare targets.  `max_server_limit` is the
 * compile-time cap on ServerLimit. */
void hyb_limits_clamp(hyb_limits *l, int max_server_limit,
                      hyb_limits_warn_fn warn, void *ctx);

#endif /* HYBRID_LIMITS_H */
