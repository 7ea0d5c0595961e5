/* hybrid_config.c: directives, their defaults, and check_config.
 *
 * Owns: the directive table, strict parsing of each value, and the
 * cross-directive clamping done once the whole config is read.  Setters
 * only parse; every rule that involves two directives lives in
 * hyb_check_config so it is applied in one place, in one order.
 * Called from: the config reader (setters), pre_config (defaults) and
 * check_config, all in the parent.
 */

#define DEFAULT_THREADS_PER_CHILD 25
#define DEFAULT_SERVER_LIMIT      16
#define DEFAULT_PREFORK_LIMIT     256
#define DEFAULT_THREAD_LIMIT      64
#define DEFAULT_MAX_WORKERS       150

/* ThreadsPerChild is executed while the config file is read (EXEC_ON_READ),
 * before pre_config, because `apache2 -V` asks whether the MPM is threaded
 * before any other directive is processed, and the answer depends on it.
 * This DSO is loaded afresh for every config read, so 0 means "not set". */
static int tpc_read;

static void hyb_config_defaults(void)
{
    memset(&conf, 0, sizeof(conf));
    conf.threads_per_child = tpc_read ? tpc_read : DEFAULT_THREADS_PER_CHILD;
    conf.set_tpc = tpc_read != 0;
    conf.strategy = hyb_strategy_find(HYBRID_DEFAULT_ACCEPT);
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

static const char *set_number(cmd_parms *cmd, void *dummy, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    hyb_field f = (hyb_field)(intptr_t)cmd->info;
    int v = 0;

    if (err) {
        return err;
    }
    /* Upper bounds here are the hard caps; relations between directives
     * are checked in hyb_check_config. */
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
    switch (f) {
    case F_START:        conf.start_servers = v;     conf.set_start = 1; break;
    case F_SERVER_LIMIT: conf.server_limit = v;      conf.set_server_limit = 1; break;
    case F_THREAD_LIMIT: conf.thread_limit = v;      conf.set_thread_limit = 1; break;
    case F_TPC:          tpc_read = conf.threads_per_child = v;
                         conf.set_tpc = 1;
                         leave_context_mark(cmd, dummy);
                         break;
    case F_MAX_WORKERS:  conf.max_workers = v;       conf.set_max_workers = 1; break;
    case F_MIN_SPARE_T:  conf.min_spare_threads = v; conf.set_min_spare_threads = 1; break;
    case F_MAX_SPARE_T:  conf.max_spare_threads = v; conf.set_max_spare_threads = 1; break;
    case F_MIN_SPARE_S:  conf.min_spare_servers = v; conf.set_spare_servers = 1; break;
    case F_MAX_SPARE_S:  conf.max_spare_servers = v; conf.set_spare_servers = 1; break;
    }
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
    conf.strategy = st;
    conf.set_strategy = 1;
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
        conf.reuseport_groups = 0;
        return NULL;
    }
    return parse_int(cmd, arg, 1, HYBRID_MAX_SERVER_LIMIT,
                     &conf.reuseport_groups);
}

#define NUMBER_CMD(name, field, help) \
    AP_INIT_TAKE1(name, set_number, (void *)(intptr_t)(field), \
                  RSRC_CONF, help)

static const command_rec hybrid_cmds[] = {
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
/* check_config: defaults that depend on other directives, then clamps. */

/* Warnings go to the console on the first config pass and to the error
 * log on restarts, like httpd's own MPMs; the second startup pass (after
 * detaching) is silent so each warning shows once. */
static void warn(server_rec *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void warn(server_rec *s, const char *fmt, ...)
{
    va_list ap;
    char buf[512];

    if (retained->mpm->module_loads == 2) {
        return;
    }
    va_start(ap, fmt);
    apr_vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (retained->startup_pass) {
        ap_log_error(APLOG_MARK, APLOG_WARNING | APLOG_STARTUP, 0, NULL,
                     "WARNING: %s", buf);
    }
    else {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, "%s", buf);
    }
}

static void keep_first_value(server_rec *s, const char *name, int *value,
                             int first)
{
    if (first && *value != first) {
        warn(s, "changing %s to %d from original value of %d not allowed "
             "during restart", name, *value, first);
        *value = first;
    }
}

static void clamp_limits(server_rec *s)
{
    int tpc1 = conf.threads_per_child == 1;

    if (!conf.set_server_limit) {
        conf.server_limit = tpc1 ? DEFAULT_PREFORK_LIMIT : DEFAULT_SERVER_LIMIT;
    }
    if (!conf.set_thread_limit) {
        conf.thread_limit = tpc1 ? 1 : DEFAULT_THREAD_LIMIT;
        if (conf.thread_limit < conf.threads_per_child) {
            conf.thread_limit = conf.threads_per_child;
        }
    }
    if (conf.server_limit > HYBRID_MAX_SERVER_LIMIT) {
        warn(s, "ServerLimit of %d exceeds the compile-time limit of %d, "
             "lowering ServerLimit to %d", conf.server_limit,
             HYBRID_MAX_SERVER_LIMIT, HYBRID_MAX_SERVER_LIMIT);
        conf.server_limit = HYBRID_MAX_SERVER_LIMIT;
    }
    /* The scoreboard is sized once, at the first start. */
    keep_first_value(s, "ServerLimit", &conf.server_limit,
                     retained->first_server_limit);
    keep_first_value(s, "ThreadLimit", &conf.thread_limit,
                     retained->first_thread_limit);
    if (conf.threads_per_child > conf.thread_limit) {
        warn(s, "ThreadsPerChild of %d exceeds ThreadLimit of %d, "
             "decreasing to match", conf.threads_per_child,
             conf.thread_limit);
        conf.threads_per_child = conf.thread_limit;
    }
}

static void clamp_workers(server_rec *s)
{
    int tpc = conf.threads_per_child;
    int most = conf.server_limit * tpc;

    if (!conf.set_max_workers) {
        conf.max_workers = DEFAULT_MAX_WORKERS < most ? DEFAULT_MAX_WORKERS
                                                       : most;
        conf.max_workers -= conf.max_workers % tpc;
        if (conf.max_workers < tpc) {
            conf.max_workers = tpc;
        }
    }
    else if (conf.max_workers < tpc) {
        warn(s, "MaxRequestWorkers of %d is less than ThreadsPerChild of %d, "
             "increasing to %d", conf.max_workers, tpc, tpc);
        conf.max_workers = tpc;
    }
    else if (conf.max_workers > most) {
        warn(s, "MaxRequestWorkers of %d would require %d servers and would "
             "exceed ServerLimit of %d, decreasing to %d",
             conf.max_workers, (conf.max_workers + tpc - 1) / tpc,
             conf.server_limit, most);
        conf.max_workers = most;
    }
    else if (conf.max_workers % tpc) {
        warn(s, "MaxRequestWorkers of %d is not an integer multiple of "
             "ThreadsPerChild of %d, decreasing to nearest multiple %d",
             conf.max_workers, tpc, conf.max_workers - conf.max_workers % tpc);
        conf.max_workers -= conf.max_workers % tpc;
    }
    conf.daemons_limit = conf.max_workers / tpc;

    if (!conf.set_start) {
        conf.start_servers = tpc == 1 ? 5 : 3;
    }
    if (conf.start_servers > conf.daemons_limit) {
        if (conf.set_start) {
            warn(s, "StartServers of %d exceeds MaxRequestWorkers / "
                 "ThreadsPerChild = %d, starting %d", conf.start_servers,
                 conf.daemons_limit, conf.daemons_limit);
        }
        conf.start_servers = conf.daemons_limit;
    }
}

static void clamp_spares(server_rec *s)
{
    int tpc = conf.threads_per_child;

    if (tpc == 1 && conf.set_spare_servers) {
        /* prefork meaning: idle children == idle threads */
        conf.spare_min = conf.min_spare_servers ? conf.min_spare_servers : 5;
        conf.spare_max = conf.max_spare_servers ? conf.max_spare_servers : 10;
    }
    else {
        if (conf.set_spare_servers) {
            warn(s, "MinSpareServers/MaxSpareServers only apply with "
                 "ThreadsPerChild 1 and are ignored with ThreadsPerChild %d; "
                 "use MinSpareThreads/MaxSpareThreads", tpc);
        }
        conf.spare_min = conf.set_min_spare_threads
                         ? conf.min_spare_threads
                         : (tpc == 1 ? 5 : 3 * tpc);
        conf.spare_max = conf.set_max_spare_threads
                         ? conf.max_spare_threads
                         : (tpc == 1 ? 10 : 10 * tpc);
    }
    if (conf.spare_min < 1) {
        conf.spare_min = 1;
    }
    if (conf.spare_min > conf.max_workers) {
        conf.spare_min = conf.max_workers;
    }
    /* Retiring one child must not drop idle threads below the minimum,
     * or the server would start and stop a child every tick. */
    if (conf.spare_max < conf.spare_min + tpc) {
        if (conf.set_max_spare_threads
            || (tpc == 1 && conf.set_spare_servers)) {
            warn(s, "%s of %d is less than %s + ThreadsPerChild = %d, "
                 "increasing to %d",
                 tpc == 1 && conf.set_spare_servers ? "MaxSpareServers"
                                                    : "MaxSpareThreads",
                 conf.spare_max,
                 tpc == 1 && conf.set_spare_servers ? "MinSpareServers"
                                                    : "MinSpareThreads",
                 conf.spare_min + tpc, conf.spare_min + tpc);
        }
        conf.spare_max = conf.spare_min + tpc;
    }
}

/* Lets a strategy set core options as if from the config file (the
 * reuseport strategy needs httpd's listeners made with SO_REUSEPORT). */
static const char *run_strategy_configure(server_rec *s, apr_pool_t *p,
                                          apr_pool_t *ptemp)
{
    static const command_rec self = { "AcceptStrategy", { NULL }, NULL,
                                      EXEC_ON_READ, TAKE1, NULL };
    cmd_parms cmd;

    if (!conf.strategy->configure) {
        return NULL;
    }
    memset(&cmd, 0, sizeof(cmd));
    cmd.cmd = &self;
    cmd.server = s;
    cmd.pool = p;
    cmd.temp_pool = ptemp;
    cmd.limited = -1;
    return conf.strategy->configure(&cmd);
}

static int hyb_check_config(apr_pool_t *p, apr_pool_t *plog,
                            apr_pool_t *ptemp, server_rec *s)
{
    const char *why;

    clamp_limits(s);
    clamp_workers(s);
    clamp_spares(s);

    why = conf.strategy->probe ? conf.strategy->probe(ptemp) : NULL;
    if (why && !conf.set_strategy) {
        /* The compiled-in default must not stop a server on a kernel that
         * lacks it; an explicit AcceptStrategy does. */
        warn(s, "the default AcceptStrategy %s cannot be used here (%s); "
             "using mutex", conf.strategy->name, why);
        conf.strategy = hyb_strategy_find("mutex");
        why = NULL;
    }
    if (!why) {
        why = run_strategy_configure(s, p, ptemp);
    }
    if (why) {
        ap_log_error(APLOG_MARK, APLOG_EMERG | APLOG_STARTUP, 0, NULL,
                     HYBLOGNO(00002) "AcceptStrategy %s cannot be used here: "
                     "%s", conf.strategy->name, why);
        return !OK;
    }
    if (conf.reuseport_groups > conf.daemons_limit
        && conf.strategy->id == HYBRID_ACCEPT_REUSEPORT) {
        warn(s, "ReusePortGroups %d exceeds the %d children MaxRequestWorkers "
             "/ ThreadsPerChild allows (each group needs a child), using %d "
             "groups", conf.reuseport_groups, conf.daemons_limit,
             conf.daemons_limit);
    }
    if (conf.reuseport_groups && conf.strategy->id != HYBRID_ACCEPT_REUSEPORT) {
        warn(s, "ReusePortGroups applies only to AcceptStrategy reuseport "
             "and is ignored with AcceptStrategy %s", conf.strategy->name);
    }
    return OK;
}
