/* hybrid_config.c: directives, their defaults, and check_config.
 *
 * Owns: the directive table, strict parsing of each value, the limits
 * fixed at the first start (kept in retained data), and check_config:
 * the cross-directive clamping (hybrid_limits.c) and the strategy's own
 * checks, done once the whole config is read.  Setters only parse.
 * Called from: the config reader (setters), pre_config (defaults) and
 * check_config, all in the parent.
 */

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "apr_file_io.h"
#include "apr_strings.h"

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_main.h"
#include "util_cfgtree.h"
#include "ap_listen.h"
#include "mpm_common.h"

#include "hybrid_accept.h"
#include "hybrid_config.h"
#include "hybrid_server.h"

hyb_config hyb_conf;

/* Whether the MPM is threaded depends on ThreadsPerChild, and httpd asks
 * before pre_config (apache2 -V prints it right after reading the file,
 * and a2enmod reads -V), when no directive has been run yet.  The config
 * tree is built by then, with <IfModule>, <IfDefine> and Include already
 * resolved into the top level, so the answer is read from it: the last
 * ThreadsPerChild there, as processing will find it.  (Making the
 * directive EXEC_ON_READ instead would make httpd run every loaded
 * module's ThreadsPerChild handler at read time, which crashes another
 * MPM loaded beside this one instead of letting httpd refuse the pair.)
 * Returns 0 if there is none, or none valid (the handler reports it). */
static int tpc_in_tree(void)
{
    const ap_directive_t *d;
    int tpc = 0;

    for (d = ap_conftree; d; d = d->next) {
        char *end;
        long v;

        if (!d->directive || strcasecmp(d->directive, "ThreadsPerChild")
            || !d->args) {
            continue;
        }
        v = strtol(d->args, &end, 10);
        while (*end == ' ' || *end == '\t') {
            end++;
        }
        if (end != d->args && *end == '\0' && v >= 1
            && v <= HYBRID_MAX_THREAD_LIMIT) {
            tpc = (int)v;
        }
    }
    return tpc;
}

/* ServerLimit and ThreadLimit size the scoreboard, once per server life. */
typedef struct {
    int server_limit;
    int thread_limit;
} first_limits;

static first_limits *first_limits_get(void)
{
    static const char key[] = "mpm_hybrid_first_limits";
    first_limits *f = ap_retained_data_get(key);

    return f ? f : ap_retained_data_create(key, sizeof(*f));
}

int hyb_config_threads_per_child(void)
{
    int tpc;

    if (hyb_conf.lim.threads_per_child) {
        return hyb_conf.lim.threads_per_child;
    }
    tpc = tpc_in_tree();
    return tpc ? tpc : HYB_DEFAULT_THREADS_PER_CHILD;
}

/* ThreadsPerChild starts out as the tree says, so that the modules'
 * pre_config hooks, which run before the directive does, already get the
 * right answer to "threaded?". */
void hyb_config_defaults(void)
{
    memset(&hyb_conf, 0, sizeof(hyb_conf));
    hyb_conf.lim.threads_per_child = hyb_config_threads_per_child();
    hyb_conf.strategy = hyb_strategy_find(HYBRID_DEFAULT_ACCEPT);
    hyb_conf.async = HYB_ASYNC_UNSET;
    hyb_conf.async_limit = HYB_DEFAULT_ASYNC_LIMIT;
}

/* Parses a whole decimal number in [min, max]; returns an error naming
 * the directive and the value, or NULL. */
static const char *parse_int(cmd_parms *cmd, const char *arg, int min,
                             int max, int *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(arg, &end, 10);
    if (end == arg || *end != '\0' || errno == ERANGE) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a whole number",
                            cmd->cmd->name, arg);
    }
    if (v < min || v > max) {
        return apr_psprintf(cmd->pool, "%s: %s is out of range (%d to %d)",
                            cmd->cmd->name, arg, min, max);
    }
    *out = (int)v;
    return NULL;
}

/* One setter for every numeric directive: cmd->info says which field. */
typedef enum {
    F_START, F_SERVER_LIMIT, F_THREAD_LIMIT, F_TPC, F_MAX_WORKERS,
    F_MIN_SPARE_T, F_MAX_SPARE_T, F_MIN_SPARE_S, F_MAX_SPARE_S
} hyb_field;

static void store_number(hyb_field f, int v)
{
    hyb_limits *l = &hyb_conf.lim;

    switch (f) {
    case F_START:
        l->start_servers = v;
        l->set_start = 1;
        break;
    case F_SERVER_LIMIT:
        l->server_limit = v;
        l->set_server_limit = 1;
        break;
    case F_THREAD_LIMIT:
        l->thread_limit = v;
        l->set_thread_limit = 1;
        break;
    case F_TPC:
        l->threads_per_child = v;
        hyb_conf.set_tpc = 1;
        break;
    case F_MAX_WORKERS:
        l->max_workers = v;
        l->set_max_workers = 1;
        break;
    case F_MIN_SPARE_T:
        l->min_spare_threads = v;
        l->set_min_spare_threads = 1;
        break;
    case F_MAX_SPARE_T:
        l->max_spare_threads = v;
        l->set_max_spare_threads = 1;
        break;
    case F_MIN_SPARE_S:
        l->min_spare_servers = v;
        l->set_spare_servers = 1;
        break;
    case F_MAX_SPARE_S:
        l->max_spare_servers = v;
        l->set_spare_servers = 1;
        break;
    }
}

static const char *set_number(cmd_parms *cmd, void *dummy, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    hyb_field f = (hyb_field)(intptr_t)cmd->info;
    int v = 0;

    if (err) {
        return err;
    }
    /* Upper bounds here are the hard caps; relations between directives
     * are checked in hyb_config_check. */
    err = parse_int(cmd, arg, f == F_MIN_SPARE_S || f == F_MIN_SPARE_T ? 0 : 1,
                    f == F_THREAD_LIMIT || f == F_TPC
                        ? HYBRID_MAX_THREAD_LIMIT : INT_MAX / 2, &v);
    if (err) {
        return err;
    }
    if (f == F_MAX_WORKERS && !strcasecmp(cmd->cmd->name, "MaxClients")) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, NULL, HYBLOGNO(00001)
                     "MaxClients is deprecated, use MaxRequestWorkers");
    }
    store_number(f, v);
    return NULL;
}

static const char *set_accept_strategy(cmd_parms *cmd, void *dummy,
                                       const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    const hyb_strategy *st;

    if (err) {
        return err;
    }
    st = hyb_strategy_find(arg);
    if (!st) {
        return apr_psprintf(cmd->pool, "AcceptStrategy: unknown strategy "
                            "'%s' (known: %s)", arg,
                            hyb_strategy_names(cmd->pool));
    }
    hyb_conf.strategy = st;
    hyb_conf.set_strategy = 1;
    return NULL;
}

static const char *set_reuseport_groups(cmd_parms *cmd, void *dummy,
                                        const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    if (err) {
        return err;
    }
    if (!strcasecmp(arg, "auto")) {
        hyb_conf.reuseport_groups = 0;
        return NULL;
    }
    return parse_int(cmd, arg, 1, HYBRID_MAX_SERVER_LIMIT,
                     &hyb_conf.reuseport_groups);
}

static const char *set_async(cmd_parms *cmd, void *dummy, int on)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    if (err) {
        return err;
    }
    hyb_conf.async = on;
    return NULL;
}

static const char *set_async_limit(cmd_parms *cmd, void *dummy,
                                   const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    if (err) {
        return err;
    }
    return parse_int(cmd, arg, 1, 1000000, &hyb_conf.async_limit);
}

#define NUMBER_CMD(name, field, help) \
    AP_INIT_TAKE1(name, set_number, (void *)(intptr_t)(field), \
                  RSRC_CONF, help)

const command_rec hyb_cmds[] = {
    LISTEN_COMMANDS,
    NUMBER_CMD("StartServers", F_START,
               "Number of child processes started at startup"),
    NUMBER_CMD("ServerLimit", F_SERVER_LIMIT,
               "Upper limit on configurable child processes"),
    NUMBER_CMD("ThreadLimit", F_THREAD_LIMIT,
               "Upper limit on configurable ThreadsPerChild"),
    NUMBER_CMD("ThreadsPerChild", F_TPC,
               "Worker threads per child; 1 runs requests on the child's "
               "only thread, like prefork"),
    NUMBER_CMD("MaxRequestWorkers", F_MAX_WORKERS,
               "Maximum number of threads serving requests at once"),
    NUMBER_CMD("MaxClients", F_MAX_WORKERS,
               "Deprecated name of MaxRequestWorkers"),
    NUMBER_CMD("MinSpareThreads", F_MIN_SPARE_T,
               "Minimum number of idle threads"),
    NUMBER_CMD("MaxSpareThreads", F_MAX_SPARE_T,
               "Maximum number of idle threads"),
    NUMBER_CMD("MinSpareServers", F_MIN_SPARE_S,
               "Minimum number of idle children (ThreadsPerChild 1 only)"),
    NUMBER_CMD("MaxSpareServers", F_MAX_SPARE_S,
               "Maximum number of idle children (ThreadsPerChild 1 only)"),
    AP_INIT_TAKE1("AcceptStrategy", set_accept_strategy, NULL, RSRC_CONF,
                  "How children take connections: mutex, preemptive, "
                  "reuseport or exclusive"),
    AP_INIT_TAKE1("ReusePortGroups", set_reuseport_groups, NULL, RSRC_CONF,
                  "Number of SO_REUSEPORT listener groups, or auto"),
    AP_INIT_FLAG("AsyncConnections", set_async, NULL, RSRC_CONF,
                 "On: a connection waiting for its next request, or in its "
                 "lingering close, holds no thread; Off: one thread serves "
                 "a connection from start to end"),
    AP_INIT_TAKE1("AsyncConnectionLimit", set_async_limit, NULL, RSRC_CONF,
                  "Most connections one child holds with AsyncConnections "
                  "on; at the limit it takes no new ones"),
    AP_GRACEFUL_SHUTDOWN_TIMEOUT_COMMAND,
    { NULL }
};

/* ------------------------------------------------------------------ */
/* check_config                                                        */

/* Warnings go to the console on the first config pass and to the error
 * log on restarts, like httpd's own MPMs; the second startup pass (after
 * detaching) is silent so each warning shows once. */
static void warn_text(server_rec *s, const char *text)
{
    if (hyb_server.detach_pass) {
        return;
    }
    if (hyb_server.startup_pass) {
        ap_log_error(APLOG_MARK, APLOG_WARNING | APLOG_STARTUP, 0, NULL,
                     "WARNING: %s", text);
    }
    else {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, "%s", text);
    }
}

void hyb_config_warn(server_rec *s, const char *fmt, ...)
{
    va_list ap;
    char buf[512];

    va_start(ap, fmt);
    apr_vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    warn_text(s, buf);
}

static void warn_limit(void *s, const char *msg)
{
    warn_text(s, msg);
}

/* Clamps the sizes; the first start's ServerLimit and ThreadLimit stay
 * for the life of the server. */
static void clamp_limits(server_rec *s)
{
    first_limits *first = first_limits_get();

    hyb_conf.lim.first_server_limit = first->server_limit;
    hyb_conf.lim.first_thread_limit = first->thread_limit;
    hyb_limits_clamp(&hyb_conf.lim, HYBRID_MAX_SERVER_LIMIT, warn_limit, s);
    if (!first->server_limit) {
        first->server_limit = hyb_conf.lim.server_limit;
        first->thread_limit = hyb_conf.lim.thread_limit;
    }
    hyb_conf.lim.first_server_limit = first->server_limit;
    hyb_conf.lim.first_thread_limit = first->thread_limit;
}

/* Lets a strategy set core options as if from the config file (the
 * reuseport strategy needs httpd's listeners made with SO_REUSEPORT). */
static const char *run_strategy_configure(server_rec *s, apr_pool_t *p,
                                          apr_pool_t *ptemp)
{
    static const command_rec self = { "AcceptStrategy", { NULL }, NULL,
                                      EXEC_ON_READ, TAKE1, NULL };
    cmd_parms cmd;

    if (!hyb_conf.strategy->configure) {
        return NULL;
    }
    memset(&cmd, 0, sizeof(cmd));
    cmd.cmd = &self;
    cmd.server = s;
    cmd.pool = p;
    cmd.temp_pool = ptemp;
    cmd.limited = -1;
    return hyb_conf.strategy->configure(&cmd);
}

/* The strategy must work here; an unusable compiled-in default falls back
 * to mutex rather than stop a server on a kernel that lacks it. */
static int check_strategy(apr_pool_t *p, apr_pool_t *ptemp, server_rec *s)
{
    const hyb_strategy *st = hyb_conf.strategy;
    const char *why = st->probe ? st->probe(ptemp) : NULL;

    if (why && !hyb_conf.set_strategy) {
        hyb_config_warn(s, "the default AcceptStrategy %s cannot be used "
                        "here (%s); using mutex", st->name, why);
        hyb_conf.strategy = hyb_strategy_find("mutex");
        why = NULL;
    }
    if (!why) {
        why = run_strategy_configure(s, p, ptemp);
    }
    if (why) {
        ap_log_error(APLOG_MARK, APLOG_EMERG | APLOG_STARTUP, 0, NULL,
                     HYBLOGNO(00002) "AcceptStrategy %s cannot be used here: "
                     "%s", hyb_conf.strategy->name, why);
        return !OK;
    }
    return OK;
}

static void check_reuseport_groups(server_rec *s)
{
    int reuseport = hyb_conf.strategy->id == HYBRID_ACCEPT_REUSEPORT;

    if (reuseport && hyb_conf.reuseport_groups > hyb_conf.lim.daemons_limit) {
        hyb_config_warn(s, "ReusePortGroups %d exceeds the %d children "
                        "MaxRequestWorkers / ThreadsPerChild allows (each "
                        "group needs a child), using %d groups",
                        hyb_conf.reuseport_groups, hyb_conf.lim.daemons_limit,
                        hyb_conf.lim.daemons_limit);
    }
    if (hyb_conf.reuseport_groups && !reuseport) {
        hyb_config_warn(s, "ReusePortGroups applies only to AcceptStrategy "
                        "reuseport and is ignored with AcceptStrategy %s",
                        hyb_conf.strategy->name);
    }
}

/* MaxConnectionsPerChild is the core's directive, which takes any number;
 * a negative one would silently mean "never". */
static int check_max_connections(void)
{
    if (ap_max_requests_per_child >= 0) {
        return OK;
    }
    ap_log_error(APLOG_MARK, APLOG_EMERG | APLOG_STARTUP, 0, NULL,
                 HYBLOGNO(00003) "MaxConnectionsPerChild: %d is negative; "
                 "use 0 for no limit, or the number of connections a child "
                 "serves before it is replaced", ap_max_requests_per_child);
    return !OK;
}

/* At ThreadsPerChild 1 the spare targets count whole processes, each with
 * its own memory (a PHP child: tens of megabytes), so values meant for
 * threads keep dozens of idle processes up. */
#define MANY_IDLE_PROCESSES 20

static void check_idle_processes(server_rec *s)
{
    const hyb_limits *l = &hyb_conf.lim;
    int servers = l->set_spare_servers;

    if (l->threads_per_child != 1 || l->spare_max <= MANY_IDLE_PROCESSES) {
        return;
    }
    hyb_config_warn(s, "%s %d / %s %d at ThreadsPerChild 1 keep %d to %d "
                    "idle processes up (each idle thread is a whole child "
                    "here); prefork-shaped values are MinSpareServers 5 / "
                    "MaxSpareServers 10",
                    servers ? "MinSpareServers" : "MinSpareThreads",
                    l->spare_min,
                    servers ? "MaxSpareServers" : "MaxSpareThreads",
                    l->spare_max, l->spare_min, l->spare_max);
}

/* AsyncConnections' default depends on the shape; the limit is at least
 * one connection per thread. */
static void resolve_async(server_rec *s)
{
    if (hyb_conf.async == HYB_ASYNC_UNSET) {
        hyb_conf.async = hyb_conf.lim.threads_per_child > 1
                         || HYB_DEFAULT_ASYNC_TPC1;
    }
    if (hyb_conf.async_limit < hyb_conf.lim.threads_per_child) {
        hyb_config_warn(s, "AsyncConnectionLimit of %d is less than "
                        "ThreadsPerChild of %d, increasing to %d",
                        hyb_conf.async_limit, hyb_conf.lim.threads_per_child,
                        hyb_conf.lim.threads_per_child);
        hyb_conf.async_limit = hyb_conf.lim.threads_per_child;
    }
}

int hyb_config_check(apr_pool_t *p, apr_pool_t *ptemp, server_rec *s)
{
    if (check_max_connections() != OK) {
        return !OK;
    }
    clamp_limits(s);
    resolve_async(s);
    if (check_strategy(p, ptemp, s) != OK) {
        return !OK;
    }
    check_reuseport_groups(s);
    check_idle_processes(s);
    hyb_config_check_running(ptemp, s);
    return OK;
}

/* ------------------------------------------------------------------ */
/* The limits of a server already running.  apache2 -t and -k restart run
 * as a separate process, which cannot know the ServerLimit and ThreadLimit
 * the running server fixed at its start (a restart keeps them: the
 * scoreboard cannot grow).  The running server leaves them in a small
 * file next to its other runtime files, so a configuration that wants
 * more is flagged on the terminal, not only in the error log after the
 * restart. */

#define LIMITS_FILE "mpm_hybrid.limits"

void hyb_config_note_running(apr_pool_t *p)
{
    const char *path = ap_runtime_dir_relative(p, LIMITS_FILE);
    apr_file_t *f;

    if (apr_file_open(&f, path, APR_FOPEN_WRITE | APR_FOPEN_CREATE
                      | APR_FOPEN_TRUNCATE, APR_FPROT_OS_DEFAULT, p)
        != APR_SUCCESS) {
        return;   /* only a courtesy to apache2 -t; nothing depends on it */
    }
    apr_file_printf(f, "%" APR_PID_T_FMT " %d %d\n", getpid(),
                    hyb_conf.lim.server_limit, hyb_conf.lim.thread_limit);
    apr_file_close(f);
}

void hyb_config_forget_running(apr_pool_t *p)
{
    apr_file_remove(ap_runtime_dir_relative(p, LIMITS_FILE), p);
}

static int read_running(apr_pool_t *p, pid_t *pid, int *server_limit,
                        int *thread_limit)
{
    char buf[96] = "";
    apr_file_t *f;
    apr_size_t n = sizeof(buf) - 1;
    long v[3];

    if (apr_file_open(&f, ap_runtime_dir_relative(p, LIMITS_FILE),
                      APR_FOPEN_READ, 0, p) != APR_SUCCESS) {
        return 0;
    }
    apr_file_read(f, buf, &n);
    apr_file_close(f);
    buf[n] = '\0';
    if (sscanf(buf, "%ld %ld %ld", &v[0], &v[1], &v[2]) != 3 || v[0] <= 0
        || (kill((pid_t)v[0], 0) < 0 && errno != EPERM)) {
        return 0;   /* no such server (any more) */
    }
    *pid = (pid_t)v[0];
    *server_limit = (int)v[1];
    *thread_limit = (int)v[2];
    return 1;
}

void hyb_config_check_running(apr_pool_t *p, server_rec *s)
{
    const hyb_limits *l = &hyb_conf.lim;
    int running_sl, running_tl;
    pid_t pid;

    if (!hyb_server.startup_pass
        || !read_running(p, &pid, &running_sl, &running_tl)
        || (running_sl == l->server_limit && running_tl == l->thread_limit)) {
        return;
    }
    hyb_config_warn(s, "httpd is running (pid %" APR_PID_T_FMT ") with "
                    "ServerLimit %d and ThreadLimit %d, fixed when it "
                    "started; a restart keeps them, so this configuration "
                    "(ServerLimit %d, ThreadLimit %d, ThreadsPerChild %d) "
                    "would run at most %d children. Stop and start httpd to "
                    "change them", pid, running_sl, running_tl,
                    l->server_limit, l->thread_limit, l->threads_per_child,
                    running_sl < l->daemons_limit ? running_sl
                                                  : l->daemons_limit);
}

/* ------------------------------------------------------------------ */
/* HTTP/2 at ThreadsPerChild 1.  mod_http2 runs a connection's requests on
 * worker threads of its own, which breaks what ThreadsPerChild 1 promises
 * (one thread runs every request, as non-thread-safe modules such as
 * mod_php need).  So h2 and h2c come off every server's Protocols, and the
 * log says so once per start. */

static int drop_h2(apr_pool_t *p, server_rec *s)
{
    core_server_config *conf = ap_get_core_module_config(s->module_config);
    apr_array_header_t *kept;
    int i, dropped = 0;

    if (!conf->protocols || !conf->protocols->nelts) {
        return 0;
    }
    kept = apr_array_make(p, conf->protocols->nelts, sizeof(const char *));
    for (i = 0; i < conf->protocols->nelts; i++) {
        const char *proto = APR_ARRAY_IDX(conf->protocols, i, const char *);

        if (!strcasecmp(proto, "h2") || !strcasecmp(proto, "h2c")) {
            dropped = 1;
        }
        else {
            APR_ARRAY_PUSH(kept, const char *) = proto;
        }
    }
    conf->protocols = kept;
    return dropped;
}

void hyb_config_post_config(apr_pool_t *p, server_rec *s)
{
    int dropped = 0;

    if (hyb_conf.lim.threads_per_child != 1
        || !ap_find_linked_module("mod_http2.c")) {
        return;
    }
    for (; s; s = s->next) {
        dropped |= drop_h2(p, s);
    }
    if (dropped && !hyb_server.startup_pass) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, ap_server_conf,
                     HYBLOGNO(00004) "HTTP/2 (h2, h2c) is off: with "
                     "ThreadsPerChild 1 every request runs on its child's "
                     "only thread, and mod_http2 would run them on threads "
                     "of its own; for HTTP/2 set ThreadsPerChild above 1 "
                     "(with thread-safe modules only)");
    }
}
