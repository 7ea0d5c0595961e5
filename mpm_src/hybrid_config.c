/* hybrid_config.c: directives, their defaults, and check_config.
 *
 * Owns: the directive table, strict parsing of each value, the limits
 * fixed at the first start (kept in retained data), and check_config:
 * the cross-directive clamping (hybrid_limits.c) and the strategy's own
 * checks, done once the whole config is read.  Setters only parse.
 * Called from: the config reader (setters), pre_config (defaults) and
 * check_config, all in the parent.
 */

#include "apr_strings.h"

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "ap_listen.h"
#include "mpm_common.h"

#include "hybrid_accept.h"
#include "hybrid_config.h"
#include "hybrid_server.h"

hyb_config hyb_conf;

/* ThreadsPerChild is executed while the config file is read (EXEC_ON_READ),
 * before pre_config, because `apache2 -V` asks whether the MPM is threaded
 * before any other directive is processed, and the answer depends on it.
 * This DSO is loaded afresh for every config read, so 0 means "not set". */
static int tpc_read;

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
    return hyb_conf.lim.threads_per_child ? hyb_conf.lim.threads_per_child
                                          : tpc_read;
}

void hyb_config_defaults(void)
{
    memset(&hyb_conf, 0, sizeof(hyb_conf));
    hyb_conf.lim.threads_per_child = tpc_read ? tpc_read
                                              : HYB_DEFAULT_THREADS_PER_CHILD;
    hyb_conf.set_tpc = tpc_read != 0;
    hyb_conf.strategy = hyb_strategy_find(HYBRID_DEFAULT_ACCEPT);
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

/* ThreadsPerChild runs while the file is read (EXEC_ON_READ), when httpd
 * cannot yet tell which server or section it is in, and it leaves no node
 * in the config tree.  So it leaves a marker node where it stood; the
 * marker is processed with the rest of the tree, where the usual context
 * check works, and rejects a ThreadsPerChild inside <VirtualHost> or a
 * directory section.  (An EXEC_ON_READ handler's second argument is the
 * sub-tree it may add.) */
#define TPC_MARK "ThreadsPerChild(context)"

static void leave_context_mark(cmd_parms *cmd, void *sub_tree)
{
    ap_directive_t *mark = apr_pcalloc(cmd->pool, sizeof(*mark));

    if (!sub_tree || !cmd->err_directive) {
        return;
    }
    mark->directive = TPC_MARK;
    mark->args = "";
    mark->filename = cmd->err_directive->filename;
    mark->line_num = cmd->err_directive->line_num;
    *(ap_directive_t **)sub_tree = mark;
}

static const char *check_tpc_context(cmd_parms *cmd, void *dummy,
                                     const char *args)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    const char *where;

    if (!err) {
        return NULL;
    }
    where = strstr(err, " cannot occur within ");
    return apr_pstrcat(cmd->pool, "ThreadsPerChild", where ? where : err,
                       NULL);
}

/* One setter for every numeric directive: cmd->info says which field. */
typedef enum {
    F_START, F_SERVER_LIMIT, F_THREAD_LIMIT, F_TPC, F_MAX_WORKERS,
    F_MIN_SPARE_T, F_MAX_SPARE_T, F_MIN_SPARE_S, F_MAX_SPARE_S
} hyb_field;

static void store_number(cmd_parms *cmd, void *sub_tree, hyb_field f, int v)
{
    hyb_limits *l = &hyb_conf.lim;

    switch (f) {
    case F_START:        l->start_servers = v;     l->set_start = 1; break;
    case F_SERVER_LIMIT: l->server_limit = v;      l->set_server_limit = 1; break;
    case F_THREAD_LIMIT: l->thread_limit = v;      l->set_thread_limit = 1; break;
    case F_TPC:          tpc_read = l->threads_per_child = v;
                         hyb_conf.set_tpc = 1;
                         leave_context_mark(cmd, sub_tree);
                         break;
    case F_MAX_WORKERS:  l->max_workers = v;       l->set_max_workers = 1; break;
    case F_MIN_SPARE_T:  l->min_spare_threads = v; l->set_min_spare_threads = 1; break;
    case F_MAX_SPARE_T:  l->max_spare_threads = v; l->set_max_spare_threads = 1; break;
    case F_MIN_SPARE_S:  l->min_spare_servers = v; l->set_spare_servers = 1; break;
    case F_MAX_SPARE_S:  l->max_spare_servers = v; l->set_spare_servers = 1; break;
    }
}

static const char *set_number(cmd_parms *cmd, void *sub_tree,
                              const char *arg)
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
    store_number(cmd, sub_tree, f, v);
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
    AP_INIT_TAKE1("ThreadsPerChild", set_number, (void *)(intptr_t)F_TPC,
                  RSRC_CONF | EXEC_ON_READ,
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
    AP_INIT_RAW_ARGS(TPC_MARK, check_tpc_context, NULL, OR_ALL | RSRC_CONF,
                     "internal: where a ThreadsPerChild directive stood"),
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

int hyb_config_check(apr_pool_t *p, apr_pool_t *ptemp, server_rec *s)
{
    clamp_limits(s);
    if (check_strategy(p, ptemp, s) != OK) {
        return !OK;
    }
    check_reuseport_groups(s);
    return OK;
}
