/* hybrid_parent.c: the parent's policy, i.e. the mpm hook.
 *
 * Owns: starting a generation, the main loop (reap, keep spare threads
 * between the limits, replace crashed children), and the four ways out:
 * graceful restart, hard restart, graceful stop and stop.  The loop
 * sleeps in poll() on a pipe that SIGCHLD and children short of idle
 * threads write to, so it reacts at once to both, and otherwise runs its
 * maintenance once a second.
 * Called from: httpd's main loop via ap_hook_mpm, once per generation.
 */

#define HYB_CRASH_RESPAWNS 3   /* immediate respawns per tick, then wait */
#define HYB_STEER_EVERY apr_time_from_msec(50)

/* Load of one listener group (with one group: of the whole server). */
typedef struct group_load {
    int children;             /* live, current, not quiescing */
    int idle;                 /* their idle threads */
    int steerable;            /* free for steering: idle or closing
                                 threads of children not retiring */
} group_load;

typedef struct parent_loop {
    server_rec *s;
    int to_start;             /* children of this generation still owed */
    int crash_respawns;       /* immediate respawns this tick */
    int fatal;                /* a current child exited CHILDFATAL */
    apr_time_t next_tick;
    apr_time_t last_maintenance;
    int ticks;
    group_load *per_group;    /* load of each listener group */
    int stopping;             /* leaving the generation: start nothing */
    int steering;             /* the strategy steers between groups */
    apr_time_t last_steer;
    int *steer_idle;          /* [groups], handed to the strategy */
    int *steer_children;
} parent_loop;

static hyb_spare_in take_snapshot(group_load *per_group);
static int neediest_group(const group_load *per_group);
static void cover_groups(group_load *per_group);
static int take_free_slot(void);

/* ------------------------------------------------------------------ */
/* Waking the parent: SIGCHLD and children write one byte to a pipe.   */

static void on_sigchld(int sig)
{
    static const char note[HYB_NOTE_SIZE] = { HYB_NOTE_CHILD_EXIT };
    int saved = errno;

    if (retained && retained->notify_fd[1] >= 0) {
        if (write(retained->notify_fd[1], note, sizeof(note)) < 0) {
            /* full pipe: the parent is awake anyway */
        }
    }
    errno = saved;
}

/* The handler lives in this DSO, which is unloaded at restart: put the
 * default back before that happens. */
static apr_status_t restore_sigchld(void *unused)
{
    signal(SIGCHLD, SIG_DFL);
    return APR_SUCCESS;
}

static void install_sigchld(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigchld;
    sa.sa_flags = SA_NOCLDSTOP;   /* no SA_RESTART: poll must return */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGCHLD, &sa, NULL);
    apr_pool_cleanup_register(pconf, NULL, restore_sigchld,
                              apr_pool_cleanup_null);
}

/* A child says it has used up MaxConnectionsPerChild.  The slot number
 * is the child's word, so it only selects an entry of the parent's own
 * table; the worst a lying child can do is get another child replaced
 * early.  The request is acted on in retire_requested(). */
static void note_retiring(int slot)
{
    if (slot >= 0 && slot < retained->max_daemon_used
        && retained->slots[slot].pid) {
        retained->slots[slot].retire_wanted = 1;
        retained->slots[slot].retire_notes++;
    }
}

/* Sleeps until timeout, a signal or a notification; returns 1 if a child
 * said it is short of idle threads. */
static int wait_for_event(apr_interval_time_t timeout)
{
    struct pollfd pfd;
    unsigned char buf[HYB_NOTE_SIZE * 64];
    int short_notice = 0;
    ssize_t n, i;

    pfd.fd = retained->notify_fd[0];
    pfd.events = POLLIN;
    if (poll(&pfd, 1, (int)apr_time_as_msec(timeout)) <= 0) {
        return 0;
    }
    /* Notes are written whole (smaller than PIPE_BUF), so reads stay
     * aligned on note boundaries. */
    while ((n = read(pfd.fd, buf, sizeof(buf))) > 0) {
        for (i = 0; i + HYB_NOTE_SIZE <= n; i += HYB_NOTE_SIZE) {
            short_notice |= buf[i] == HYB_NOTE_SHORT;
            if (buf[i] == HYB_NOTE_RETIRING) {
                note_retiring(buf[i + 1] | buf[i + 2] << 8 | buf[i + 3] << 16);
                short_notice = 1;
            }
        }
    }
    return short_notice;
}

/* ------------------------------------------------------------------ */
/* Reaping                                                             */

static int take_free_slot(void)
{
    int i;

    for (i = 0; i < conf.server_limit; i++) {
        if (!retained->slots[i].pid) {
            return i;
        }
    }
    return -1;
}

static void log_unexpected_exit(int slot, pid_t pid, apr_exit_why_e why,
                                int status)
{
    if (why & APR_PROC_SIGNAL) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, ap_server_conf,
                     HYBLOGNO(00050) "child pid %" APR_PID_T_FMT " (slot %d) "
                     "was killed by signal %d; replacing it", pid, slot,
                     status);
    }
    else if (status != 0) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, ap_server_conf,
                     HYBLOGNO(00051) "child pid %" APR_PID_T_FMT " (slot %d) "
                     "exited with status %d", pid, slot, status);
    }
}

/* Threads of a slot busy with a connection (keep-alive included).  The
 * scoreboard is the children's: this only decides when to retire. */
static int slot_busy_threads(int slot)
{
    int t, n = 0;

    for (t = 0; t < conf.threads_per_child; t++) {
        int st = ap_scoreboard_image->servers[slot][t].status;

        n += st > SERVER_READY && st != SERVER_GRACEFUL;
    }
    return n;
}

/* Retires a child that is about to use up MaxConnectionsPerChild.  With
 * several listener groups the child keeps accepting until its replacement
 * for the same group has started (its group's queue must never be without
 * a taker), so the replacement comes first.  If no slot is free for it,
 * the child is retired the moment it holds no connection: it then exits
 * at once, its slot frees and the group is refilled within milliseconds,
 * instead of waiting out a keep-alive connection.  With one shared queue
 * the child stops accepting by itself and is only marked here. */
static void retire_requested(int slot, group_load *per_group)
{
    hyb_slot *ps = &retained->slots[slot];
    int spare;

    if (!ps->pid || ps->quiescing) {
        ps->retire_wanted = 0;
        return;
    }
    if (hyb_groups() > 1) {
        spare = apr_time_now() < retained->next_fork_try ? -1
                                                         : take_free_slot();
        if (spare >= 0 && hyb_spawn(spare, ps->group) == 0) {
            per_group[ps->group].children++;
        }
        else if (per_group[ps->group].children < 2
                 && slot_busy_threads(slot) > 0 && ps->retire_notes < 4) {
            /* its group's only child: wait until it is idle, but not
             * beyond ~50 connections over its limit */
            return;
        }
    }
    ps->retire_wanted = 0;
    ps->quiescing = 1;
    ap_get_scoreboard_process(slot)->quiescing = 1;
    hyb_stats_note_state(slot, HYBRID_SLOT_GRACEFUL);
    hyb_signal_child(slot, AP_SIG_GRACEFUL);
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, ap_server_conf, HYBLOGNO(00065)
                 "Child %d retiring: pid %" APR_PID_T_FMT ", group %d "
                 "(MaxConnectionsPerChild)", slot, ps->pid, ps->group);
}

static void process_retirements(parent_loop *pl)
{
    int i;

    for (i = 0; i < retained->max_daemon_used; i++) {
        if (retained->slots[i].retire_wanted) {
            take_snapshot(pl->per_group);
            retire_requested(i, pl->per_group);
        }
    }
}

static void child_exited(parent_loop *pl, apr_proc_t *proc,
                         apr_exit_why_e why, int status)
{
    int processed = ap_process_child_status(proc, why, status);
    int slot = hyb_find_slot(proc->pid);
    hyb_slot *ps = slot >= 0 ? &retained->slots[slot] : NULL;
    int current = ps && ps->generation == retained->mpm->my_generation;
    int expected = ps && ps->quiescing;

    if (processed == APEXIT_CHILDFATAL && (!ps || current)) {
        pl->fatal = 1;
    }
    if (!ps) {
        if (apr_proc_other_child_alert(proc, APR_OC_REASON_DEATH, status)
            != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, ap_server_conf,
                         HYBLOGNO(00052) "long lost child came home! "
                         "(pid %" APR_PID_T_FMT ")", proc->pid);
        }
        return;
    }
    if (!expected && current) {
        log_unexpected_exit(slot, proc->pid, why, status);
    }
    if (current && (why & APR_PROC_SIGNAL) && conf.strategy->reaped) {
        conf.strategy->reaped(proc->pid);
    }
    hyb_note_exit(slot, why, status);
    if (processed == APEXIT_CHILDSICK) {
        retained->spawn_rate = 1;   /* resource shortage: go slow */
        return;
    }
    if (pl->fatal || pl->stopping || retained->mpm->restart_pending
        || retained->mpm->shutdown_pending) {
        return;                 /* no replacements on the way out */
    }
    /* A crashed current child is replaced at once (its reuseport group or
     * share of the load must not wait a tick), a few times per tick. */
    if (!expected && current && (why & APR_PROC_SIGNAL)
        && pl->crash_respawns < HYB_CRASH_RESPAWNS && slot < conf.server_limit) {
        pl->crash_respawns++;
        hyb_spawn(slot, ps->group);
    }
    else if (pl->to_start > 0 && slot < conf.server_limit) {
        take_snapshot(pl->per_group);
        if (hyb_spawn(slot, neediest_group(pl->per_group)) == 0) {
            pl->to_start--;
        }
    }
    else {
        /* A group left without a child gets one now, not next tick. */
        take_snapshot(pl->per_group);
        cover_groups(pl->per_group);
    }
}

static void reap_children(parent_loop *pl)
{
    apr_proc_t proc;
    apr_exit_why_e why;
    int status;

    while (APR_STATUS_IS_CHILD_DONE(apr_proc_wait_all_procs(
               &proc, &status, &why, APR_NOWAIT, pconf))) {
        child_exited(pl, &proc, why, status);
    }
}

/* ------------------------------------------------------------------ */
/* Maintenance                                                         */

/* Counts idle threads in live children of this generation.  The
 * scoreboard is written by children: it only feeds counts, never pids or
 * indices the parent acts on. */
static hyb_spare_in take_snapshot(group_load *per_group)
{
    hyb_spare_in in;
    int i, t, groups = hyb_groups();
    group_load none = { 0, 0, 0 }, *gl;

    memset(&in, 0, sizeof(in));
    memset(per_group, 0, sizeof(*per_group) * groups);
    for (i = 0; i < conf.server_limit; i++) {
        const hyb_slot *ps = &retained->slots[i];

        if (!ps->pid) {
            in.free_slots++;
            continue;
        }
        if (ps->quiescing || ps->generation != retained->mpm->my_generation) {
            continue;
        }
        in.active_children++;
        gl = ps->group >= 0 && ps->group < groups ? &per_group[ps->group]
                                                  : &none;
        gl->children++;
        for (t = 0; t < conf.threads_per_child; t++) {
            int st = ap_scoreboard_image->servers[i][t].status;

            in.idle_threads += st <= SERVER_READY;
            gl->idle += st <= SERVER_READY;
            gl->steerable += !ps->retire_wanted
                             && (st <= SERVER_READY || st == SERVER_CLOSING);
            if (!ps->ready_noted && st >= SERVER_READY) {
                /* first sign of a serving thread: tell status readers */
                retained->slots[i].ready_noted = 1;
                hyb_stats_note_state(i, HYBRID_SLOT_READY);
            }
        }
    }
    for (i = 0; i < groups; i++) {
        hyb_group_load_publish(i, per_group[i].children);
    }
    in.daemons_limit = conf.daemons_limit;
    in.spare_min = conf.spare_min;
    in.spare_max = conf.spare_max;
    in.spawn_rate = retained->spawn_rate;
    in.hold_off = retained->hold_off_spawn_ticks;
    return in;
}

/* The group that can best spare a child: most idle threads among groups
 * with more than one child; -1 if none may lose one. */
static int idlest_group(const group_load *per_group)
{
    int g, best = -1, groups = hyb_groups();

    for (g = 0; g < groups; g++) {
        if ((per_group[g].children > 1 || groups == 1)
            && (best < 0 || per_group[g].idle > per_group[best].idle)) {
            best = g;
        }
    }
    return best;
}

/* The group a new child helps most: fewest idle threads (its queue is
 * the one waiting), then fewest children. */
static int neediest_group(const group_load *per_group)
{
    int g, best = 0;

    for (g = 1; g < hyb_groups(); g++) {
        if (per_group[g].idle < per_group[best].idle
            || (per_group[g].idle == per_group[best].idle
                && per_group[g].children < per_group[best].children)) {
            best = g;
        }
    }
    return best;
}

/* Retires one child of the group with most idle threads (never a group's
 * last child), the highest slot first so the low slots stay stable. */
static void retire_one(group_load *per_group)
{
    int i, g = idlest_group(per_group);

    if (g < 0) {
        return;
    }
    for (i = conf.server_limit - 1; i >= 0; i--) {
        hyb_slot *ps = &retained->slots[i];

        if (ps->pid && !ps->quiescing && ps->group == g
            && ps->generation == retained->mpm->my_generation) {
            per_group[g].children--;
            ps->quiescing = 1;
            ap_get_scoreboard_process(i)->quiescing = 1;
            hyb_stats_note_state(i, HYBRID_SLOT_GRACEFUL);
            hyb_signal_child(i, AP_SIG_GRACEFUL);
            return;
        }
    }
}

/* Starts up to n children, each in the group that needs one most. */
static int spawn_children(int n, group_load *per_group)
{
    int started = 0, slot, g;

    if (apr_time_now() < retained->next_fork_try) {
        return 0;
    }
    while (started < n && (slot = take_free_slot()) >= 0) {
        g = neediest_group(per_group);
        if (hyb_spawn(slot, g) != 0) {
            break;
        }
        per_group[g].children++;
        per_group[g].idle += conf.threads_per_child;
        started++;
    }
    return started;
}

/* Every listener group must always have a child able to take what the
 * kernel queues on it, whatever the spare counts say. */
static void cover_groups(group_load *per_group)
{
    int g, slot;

    for (g = 0; g < hyb_groups(); g++) {
        if (per_group[g].children > 0
            || apr_time_now() < retained->next_fork_try) {
            continue;
        }
        if ((slot = take_free_slot()) < 0) {
            break;
        }
        if (hyb_spawn(slot, g) == 0) {
            per_group[g].children++;
            per_group[g].idle += conf.threads_per_child;
        }
    }
}

/* At MaxRequestWorkers no group can get another child, so one whose
 * threads are all busy (connections wait in its queue) could stay starved
 * while another group idles; keep-alive connections, pinned to threads,
 * make that last.  Retire a child of a group with a child's worth of idle
 * threads: its slot goes to the starved group at the next pass, and its
 * clients reconnect and are spread again.  One per tick at most. */
static void rebalance_groups(group_load *per_group)
{
    int g, starved = 0, donor;

    for (g = 0; g < hyb_groups(); g++) {
        starved |= per_group[g].idle == 0;
    }
    donor = idlest_group(per_group);
    if (starved && donor >= 0
        && per_group[donor].idle >= conf.threads_per_child) {
        retire_one(per_group);
    }
}

static void log_limits(const hyb_spare_out *out)
{
    if (out->at_max_workers && !retained->max_workers_logged) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, ap_server_conf,
                     HYBLOGNO(00053) "server reached MaxRequestWorkers "
                     "setting (%d), consider raising the MaxRequestWorkers "
                     "setting", conf.max_workers);
        retained->max_workers_logged = 1;
    }
    if (out->no_free_slot && !retained->slots_full_logged) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, ap_server_conf,
                     HYBLOGNO(00054) "all %d slots are in use by children "
                     "still finishing after a restart (not at "
                     "MaxRequestWorkers); raise ServerLimit above "
                     "MaxRequestWorkers / ThreadsPerChild for headroom",
                     conf.server_limit);
        retained->slots_full_logged = 1;
    }
}

/* An early pass (a child just ran out of idle threads) only acts on a real
 * shortage, under half of the idle minimum: a single request landing on a
 * small server is not a burst.  Retiring waits for the regular tick. */
static void perform_maintenance(parent_loop *pl, int early)
{
    group_load *per_group = pl->per_group;
    hyb_spare_in in = take_snapshot(per_group);
    hyb_spare_out out;

    cover_groups(per_group);
    if (early && in.idle_threads * 2 >= in.spare_min) {
        return;
    }
    out = hyb_spare_decide(&in);
    if (out.retire && !early) {
        retire_one(per_group);
    }
    else if (out.at_max_workers && !early && hyb_groups() > 1) {
        rebalance_groups(per_group);
    }
    if (out.spawn) {
        int n = spawn_children(out.spawn, per_group);

        if (n > 8) {
            ap_log_error(APLOG_MARK, APLOG_INFO, 0, ap_server_conf,
                         HYBLOGNO(00055) "server seems busy (you may need to "
                         "increase StartServers, or Min/MaxSpareThreads), "
                         "spawning %d children, there are %d idle threads, "
                         "and %d total children", n, in.idle_threads,
                         in.active_children);
        }
    }
    log_limits(&out);
    /* While fork fails the rate must not grow, or the first pass that
     * works again would start a pent-up burst. */
    retained->spawn_rate = retained->fork_failures ? 1 : out.next_rate;
    if (retained->hold_off_spawn_ticks > 0) {
        retained->hold_off_spawn_ticks--;
    }
    pl->last_maintenance = apr_time_now();
}

/* Tells the strategy how much room each listener group has, at most every
 * HYB_STEER_EVERY, so that new connections go where threads are free.
 * Counted as the workers count themselves (hybrid_worker.c, room_wait): a
 * thread closing its connection is about to be free; a child past
 * MaxConnectionsPerChild is not offered. */
static void steer_connections(parent_loop *pl, apr_time_t now)
{
    int g;

    if (!pl->steering || now - pl->last_steer < HYB_STEER_EVERY) {
        return;
    }
    pl->last_steer = now;
    take_snapshot(pl->per_group);
    for (g = 0; g < hyb_groups(); g++) {
        pl->steer_idle[g] = pl->per_group[g].steerable;
        pl->steer_children[g] = pl->per_group[g].children;
    }
    conf.strategy->steer(pl->steer_idle, pl->steer_children, hyb_groups());
}

static void steering_init(parent_loop *pl)
{
    pl->steering = conf.strategy->steer && hyb_groups() > 1;
    if (pl->steering) {
        pl->steer_idle = apr_pcalloc(pconf, sizeof(int) * hyb_groups());
        pl->steer_children = apr_pcalloc(pconf, sizeof(int) * hyb_groups());
    }
}

/* One pass of the main loop: sleep, reap, and maybe maintain.  While
 * steering, the parent wakes at least every 2 * HYB_STEER_EVERY. */
static void loop_once(parent_loop *pl)
{
    apr_time_t now = apr_time_now();
    apr_interval_time_t wait = pl->next_tick > now ? pl->next_tick - now : 0;
    int short_notice, early = 0;

    if (pl->steering && wait > 2 * HYB_STEER_EVERY) {
        wait = 2 * HYB_STEER_EVERY;
    }
    short_notice = wait_for_event(wait);
    reap_children(pl);
    if (pl->fatal) {
        return;
    }
    process_retirements(pl);
    now = apr_time_now();
    steer_connections(pl, now);
    if (now >= pl->next_tick) {
        pl->next_tick = now + HYB_TICK;
        pl->crash_respawns = 0;
        ap_update_global_status();
        if (++pl->ticks % 10 == 0) {
            ap_run_monitor(pconf, pl->s);
        }
    }
    else if (!short_notice
             || now - pl->last_maintenance < HYB_EARLY_TICK) {
        return;
    }
    else {
        early = 1;
    }
    if (pl->to_start > 0) {
        take_snapshot(pl->per_group);
        pl->to_start -= spawn_children(pl->to_start, pl->per_group);
        pl->last_maintenance = now;
        return;
    }
    perform_maintenance(pl, early);
}

/* ------------------------------------------------------------------ */
/* Leaving the loop                                                    */

static void tell_children_graceful(void)
{
    int i;

    for (i = 0; i < retained->max_daemon_used; i++) {
        hyb_slot *ps = &retained->slots[i];

        if (ps->pid) {
            ps->quiescing = 1;
            ap_get_scoreboard_process(i)->quiescing = 1;
            hyb_stats_note_state(i, HYBRID_SLOT_GRACEFUL);
            hyb_signal_child(i, AP_SIG_GRACEFUL);
        }
    }
}

static void graceful_stop(parent_loop *pl)
{
    apr_time_t cutoff = ap_graceful_shutdown_timeout
        ? apr_time_now() + apr_time_from_sec(ap_graceful_shutdown_timeout)
        : 0;

    hyb_listeners_mark_closing(ap_listeners);
    ap_close_listeners();
    if (conf.strategy->stopping) {
        conf.strategy->stopping();
    }
    tell_children_graceful();
    ap_remove_pid(pconf, ap_pid_fname);
    ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, ap_server_conf, HYBLOGNO(00056)
                 "caught " AP_SIG_GRACEFUL_STOP_STRING
                 ", shutting down gracefully");
    retained->mpm->shutdown_pending = 0;
    while (hyb_live_children(1) && !retained->mpm->shutdown_pending
           && (!cutoff || apr_time_now() < cutoff)) {
        wait_for_event(apr_time_from_msec(500));
        reap_children(pl);
    }
    if (hyb_live_children(1)) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, ap_server_conf,
                     HYBLOGNO(00057) "%d children still busy at the end of "
                     "GracefulShutdownTimeout (%ds); stopping them",
                     hyb_live_children(1), ap_graceful_shutdown_timeout);
    }
    hyb_reclaim_all();
}

static int finish_generation(parent_loop *pl)
{
    retained->mpm->mpm_state = AP_MPMQ_STOPPING;
    pl->stopping = 1;

    if (pl->fatal) {
        ap_log_error(APLOG_MARK, APLOG_ALERT, 0, ap_server_conf,
                     HYBLOGNO(00058) "a child returned a fatal error; "
                     "stopping the server");
        hyb_reclaim_all();
        ap_remove_pid(pconf, ap_pid_fname);
        return !OK;
    }
    if (retained->mpm->shutdown_pending && retained->mpm->is_ungraceful) {
        hyb_reclaim_all();
        ap_remove_pid(pconf, ap_pid_fname);
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, ap_server_conf,
                     HYBLOGNO(00059) "caught SIGTERM, shutting down");
        return DONE;
    }
    if (retained->mpm->shutdown_pending) {
        graceful_stop(pl);
        return DONE;
    }
    ++retained->mpm->my_generation;
    ap_scoreboard_image->global->running_generation =
        retained->mpm->my_generation;
    if (!retained->mpm->is_ungraceful) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, ap_server_conf,
                     HYBLOGNO(00060) "Graceful restart requested, doing "
                     "restart");
        /* The old children go on serving while the config is re-read and
         * are told to go only then (hyb_run): by that time the listeners
         * the new config dropped are marked closing, and the old children
         * drain them instead of letting them close on a full queue. */
        retained->old_generation_pending = 1;
    }
    else {
        hyb_reclaim_all();
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, ap_server_conf,
                     HYBLOGNO(00061) "SIGHUP received.  Attempting to "
                     "restart");
    }
    return OK;
}

/* ------------------------------------------------------------------ */

static void log_startup(server_rec *s, apr_pool_t *plog)
{
    const char *mutex = conf.strategy->mutex_name
                        ? conf.strategy->mutex_name() : NULL;

    ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, ap_server_conf, HYBLOGNO(00062)
                 "%s configured -- resuming normal operations",
                 ap_get_server_description());
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, ap_server_conf, HYBLOGNO(00063)
                 "Server built: %s", ap_get_server_built());
    ap_log_command_line(plog, s);
    ap_log_mpm_common(s);
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, ap_server_conf, HYBLOGNO(00064)
                 "mpm_hybrid: %d threads per child, at most %d children "
                 "and %d busy threads, AcceptStrategy %s%s%s",
                 conf.threads_per_child, conf.daemons_limit,
                 conf.max_workers, conf.strategy->name,
                 mutex ? ", accept mutex " : "", mutex ? mutex : "");
}

static int hyb_run(apr_pool_t *_pconf, apr_pool_t *plog, server_rec *s)
{
    parent_loop pl;

    memset(&pl, 0, sizeof(pl));
    pl.s = s;
    pl.per_group = apr_pcalloc(pconf, sizeof(group_load) * hyb_groups());
    steering_init(&pl);
    ap_log_pid(pconf, ap_pid_fname);
    if (!retained->mpm->was_graceful) {
        if (ap_run_pre_mpm(s->process->pool, SB_SHARED) != OK) {
            retained->mpm->mpm_state = AP_MPMQ_STOPPING;
            return !OK;
        }
        ap_scoreboard_image->global->running_generation =
            retained->mpm->my_generation;
    }
    hyb_stats_publish_generation();
    ap_unixd_mpm_set_signals(pconf, retained->one_process);
    if (retained->one_process) {
        hyb_child_main(0, 0);
    }
    install_sigchld();

    /* At least one child per listener group from the start. */
    pl.to_start = conf.start_servers < hyb_groups() ? hyb_groups()
                                                    : conf.start_servers;
    if (retained->mpm->was_graceful) {
        retained->hold_off_spawn_ticks = 10;
    }
    if (retained->old_generation_pending) {
        retained->old_generation_pending = 0;
        tell_children_graceful();
    }
    take_snapshot(pl.per_group);
    pl.to_start -= spawn_children(pl.to_start, pl.per_group);
    log_startup(s, plog);
    retained->mpm->mpm_state = AP_MPMQ_RUNNING;
    pl.next_tick = apr_time_now() + HYB_TICK;

    while (!retained->mpm->restart_pending && !retained->mpm->shutdown_pending
           && !pl.fatal) {
        loop_once(&pl);
    }
    return finish_generation(&pl);
}
