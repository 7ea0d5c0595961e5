/* hybrid_config.h: mpm_hybrid's directives and what they add up to.
 *
 * hyb_conf is written while the config is read and in check_config (in
 * the parent), and only read after that, by the parent and by children
 * (which inherit it with fork).
 */
#ifndef HYBRID_CONFIG_H
#define HYBRID_CONFIG_H

#include "httpd.h"
#include "http_config.h"

#include "hybrid_limits.h"
#include "hybrid_types.h"

/* Compile-time caps, as httpd's MAX_SERVER_LIMIT / MAX_THREAD_LIMIT. */
#ifndef HYBRID_MAX_SERVER_LIMIT
#define HYBRID_MAX_SERVER_LIMIT 20000
#endif
#ifndef HYBRID_MAX_THREAD_LIMIT
#define HYBRID_MAX_THREAD_LIMIT 20000
#endif
#ifndef HYBRID_DEFAULT_ACCEPT
#define HYBRID_DEFAULT_ACCEPT "exclusive"
#endif

/* AsyncConnections: unset means on for threaded children and for
 * ThreadsPerChild 1 as HYB_DEFAULT_ASYNC_TPC1 says. */
#define HYB_ASYNC_UNSET -1
#ifndef HYB_DEFAULT_ASYNC_TPC1
#define HYB_DEFAULT_ASYNC_TPC1 0
#endif
#define HYB_DEFAULT_ASYNC_LIMIT 10000

typedef struct hyb_config {
    hyb_limits lim;           /* sizes and spare targets, clamped */
    int reuseport_groups;     /* ReusePortGroups; 0 = auto */
    const hyb_strategy *strategy;
    int async;                /* AsyncConnections: park idle connections */
    int async_limit;          /* AsyncConnectionLimit: per child */
    unsigned set_tpc:1, set_strategy:1;
} hyb_config;

extern hyb_config hyb_conf;
extern const command_rec hyb_cmds[];

/* pre_config: every directive back to its default. */
void hyb_config_defaults(void);

/* check_config: defaults that depend on other directives, clamps, and the
 * strategy's own checks.  Returns OK, or !OK after logging why. */
int hyb_config_check(apr_pool_t *p, apr_pool_t *ptemp, server_rec *s);

/* post_config: what ThreadsPerChild 1 promises other modules (HTTP/2 is
 * switched off). */
void hyb_config_post_config(apr_pool_t *p, server_rec *s);

/* The running server's ServerLimit/ThreadLimit, for apache2 -t and -k
 * restart to compare with (note: parent at a fresh start; forget: at
 * stop); check: check_config's warning when they differ. */
void hyb_config_note_running(apr_pool_t *p);
void hyb_config_forget_running(apr_pool_t *p);
void hyb_config_check_running(apr_pool_t *p, server_rec *s);

/* ThreadsPerChild as far as the config has been read: httpd asks whether
 * the MPM is threaded before pre_config (see hybrid_config.c). */
int hyb_config_threads_per_child(void);

/* A warning about the configuration: on the console at start-up, in the
 * error log on a restart, never twice. */
void hyb_config_warn(server_rec *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif /* HYBRID_CONFIG_H */
