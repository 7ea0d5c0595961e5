/* hybrid_parent.c: the parent's policy, i.e. the mpm hook.
 *
 * Owns: starting a generation, the main loop (reap, keep spare threads
 * between the limits, replace crashed children), and the four ways out:
 * graceful restart, hard restart, graceful stop and stop.  The loop
 * sleeps on the wake-up pipes (hybrid_notes.c), so it reacts at once to a
 * child's exit and to a child short of idle threads, and otherwise runs
 * its maintenance once a second.  Mechanism is hybrid_proc.c's, the group
 * policy hybrid_groups.c's, the spare decision hybrid_spare.c's.
 * Called from: httpd's main loop via ap_hook_mpm, once per generation.
 */

#include <signal.h>

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_main.h"
#include "ap_listen.h"
#include "mpm_common.h"
#include "scoreboard.h"

#include "hybrid_accept.h"
#include "hybrid_child.h"
#include "hybrid_config.h"
#include "hybrid_counters.h"
#include "hybrid_drain.h"
#include "hybrid_groups.h"
#include "hybrid_notes.h"
#include "hybrid_parent.h"
#include "hybrid_proc.h"
#include "hybrid_retire.h"
#include "hybrid_server.h"
#include "hybrid_spare.h"
#include "reuseport_steer.h"

#define HYB_TICK            apr_time_from_sec(1)
#define HYB_EARLY_TICK      apr_time_from_msec(100)
#define HYB_CRASH_RESPAWNS  3   /* immediate respawns per tick, then wait */

/* Policy state that outlives a generation. */
typedef struct {
    int spawn_rate;
    int hold_off_spawn_ticks; /* no exponential ramp right after restart */
    int max_workers_logged;   /* each said once per server lifetime */
    int slots_full_logged;
    int old_generation_pending; /* graceful restart: tell the old children
                                 * once the new config is in place */
} parent_retained;

typedef struct parent_loop {
    server_rec *s;
    hyb_load load;            /* measured afresh before each decision */
    int to_start;             /* children of this generation still owed */
    int crash_respawns;       /* immediate respawns this tick */
    int fatal;                /* a current child exited CHILDFATAL */
    int stopping;             /* leaving the generation: start nothing */
    apr_time_t next_tick;
    apr_time_t last_maintenance;
    int short_pending;        /* a child is short; no look since */
    int looked_early;         /* the last look was for such a note */
    int ticks;
    int *steer_free;          /* [groups], handed to steering */
    int *steer_children;
} parent_loop;

static parent_retained *pret;

void hyb_parent_init(void)
{
    static const char key[] = "mpm_hybrid_parent";

    pret = ap_retained_data_get(key);
    if (!pret) {
        pret = ap_retained_data_create(key, sizeof(*pret));
        pret->spawn_rate = 1;
    }
}

/* The load, measured now, and published to whom it concerns (children
 * asking whether their group has others; status readers asking which
 * children serve); what it says about spare threads. */
static hyb_spare_in measure(parent_loop *pl)
{
    hyb_load_measure(&pl->load);
    hyb_retire_publish(&pl->load);
    hyb_load_note_ready();
    /* While fork fails the rate must not grow, or the first pass that
     * works again would start a pent-up burst. */
    return hyb_load_spare_in(&pl->load, hyb_proc_fork_failing()
                                        ? 1 : pret->spawn_rate,
                             pret->hold_off_spawn_ticks);
}

/* ------------------------------------------------------------------ */
/* Reaping                                                             */

/* httpd's ap_process_child_status already logs a child killed by any
 * signal but the ones it sends itself (AH00052, with the signal's name and
 * where a core dump went): one line per crash, so only those are said
 * here. */
static int core_logs_signal(int sig)
{
    return sig != SIGTERM && sig != SIGHUP && sig != AP_SIG_GRACEFUL
           && sig != SIGKILL;
}

static void log_unexpected_exit(int slot, pid_t pid, apr_exit_why_e why,
                                int status)
{
    if ((why & APR_PROC_SIGNAL) && core_logs_signal(status)) {
        return;
    }
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

/* A child that is not ours: a piped logger, mod_cgid's daemon... */
static void other_child_exited(apr_proc_t *proc, int status)
{
    if (apr_proc_other_child_alert(proc, APR_OC_REASON_DEATH, status)
        != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, ap_server_conf,
                     HYBLOGNO(00052) "long lost child came home! "
                     "(pid %" APR_PID_T_FMT ")", proc->pid);
    }
}

/* What replaces a child that exited: at once after a crash (its reuseport
 * group or share of the load must not wait a tick, a few times per tick),
 * one owed by a graceful restart, or a child for a group left without. */
static void replace_child(parent_loop *pl, int slot, int group, int crashed)
{
    if (crashed && pl->crash_respawns < HYB_CRASH_RESPAWNS
        && slot < hyb_conf.lim.server_limit) {
        pl->crash_respawns++;
        hyb_proc_spawn(slot, group);
        return;
    }
    measure(pl);
    if (pl->to_start > 0 && slot < hyb_conf.lim.server_limit) {
        if (hyb_proc_spawn(slot, hyb_groups_neediest(&pl->load)) == 0) {
            pl->to_start--;
        }
        return;
    }
    hyb_groups_cover(&pl->load);
}

static void child_exited(parent_loop *pl, apr_proc_t *proc,
                         apr_exit_why_e why, int status)
{
    int processed = ap_process_child_status(proc, why, status);
    int slot = hyb_proc_find(proc->pid);
    hyb_slot *ps = slot >= 0 ? &hyb_slots[slot] : NULL;
    int current = ps && ps->generation == hyb_server.mpm->my_generation;
    int expected = ps && ps->quiescing;
    int group = ps ? ps->group : 0;
    int crashed = !expected && current && (why & APR_PROC_SIGNAL);

    if (processed == APEXIT_CHILDFATAL && (!ps || current)) {
        pl->fatal = 1;
    }
    if (!ps) {
        other_child_exited(proc, status);
        return;
    }
    if (!expected && current) {
        log_unexpected_exit(slot, proc->pid, why, status);
    }
    if (current && (why & APR_PROC_SIGNAL)) {
        if (hyb_conf.strategy->reaped) {
            hyb_conf.strategy->reaped(proc->pid);
        }
        hyb_steer_child_killed();
    }
    hyb_proc_note_exit(slot, why, status);
    if (processed == APEXIT_CHILDSICK) {
        pret->spawn_rate = 1;   /* resource shortage: go slow */
        return;
    }
    if (pl->fatal || pl->stopping || hyb_server.mpm->restart_pending
        || hyb_server.mpm->shutdown_pending) {
        return;                 /* no replacements on the way out */
    }
    replace_child(pl, slot, group, crashed);
}

static void reap_children(parent_loop *pl)
{
    apr_proc_t proc;
    apr_exit_why_e why;
    int status;

    while (APR_STATUS_IS_CHILD_DONE(apr_proc_wait_all_procs(
               &proc, &status, &why, APR_NOWAIT, hyb_server.pconf))) {
        child_exited(pl, &proc, why, status);
    }
}

/* ------------------------------------------------------------------ */
/* Maintenance                                                         */

static void log_limits(const hyb_spare_out *out)
{
    if (out->at_max_workers && !pret->max_workers_logged) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, ap_server_conf,
                     HYBLOGNO(00053) "server reached MaxRequestWorkers "
                     "setting (%d), consider raising the MaxRequestWorkers "
                     "setting", hyb_conf.lim.max_workers);
        pret->max_workers_logged = 1;
    }
    if (out->no_free_slot && !pret->slots_full_logged) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, ap_server_conf,
                     HYBLOGNO(00054) "all %d slots are in use by children "
                     "still finishing after a restart (not at "
                     "MaxRequestWorkers); raise ServerLimit above "
                     "MaxRequestWorkers / ThreadsPerChild for headroom",
                     hyb_conf.lim.server_limit);
        pret->slots_full_logged = 1;
    }
}

static void spawn_spares(parent_loop *pl, int n, const hyb_spare_in *in)
{
    int started = hyb_groups_spawn(&pl->load, n);

    if (started > 8) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, ap_server_conf,
                     HYBLOGNO(00055) "server seems busy (you may need to "
                     "increase StartServers, or Min/MaxSpareThreads), "
                     "spawning %d children, there are %d idle threads, "
                     "and %d total children", started, in->idle_threads,
                     in->active_children);
    }
}

/* An early pass (a child just ran out of idle threads) only acts on a real
 * shortage, under half of the idle minimum: a single request landing on a
 * small server is not a burst.  Retiring waits for the regular tick. */
static void perform_maintenance(parent_loop *pl, int early)
{
    hyb_spare_in in = measure(pl);
    hyb_spare_out out;

    hyb_groups_cover(&pl->load);
    if (early && in.idle_threads * 2 >= in.spare_min) {
        pl->last_maintenance = apr_time_now();   /* a look all the same */
        return;
    }
    out = hyb_spare_decide(&in);
    if (out.retire && !early) {
        hyb_groups_retire_one(&pl->load);
    }
    else if (out.at_max_workers && !early && pl->load.groups > 1) {
        hyb_groups_rebalance(&pl->load);
    }
    if (out.spawn) {
        spawn_spares(pl, out.spawn, &in);
    }
    log_limits(&out);
    pret->spawn_rate = hyb_proc_fork_failing() ? 1 : out.next_rate;
    if (pret->hold_off_spawn_ticks > 0) {
        pret->hold_off_spawn_ticks--;
    }
    pl->last_maintenance = apr_time_now();
}

/* Tells steering how much room each listener group has (at most every
 * 50 ms, reuseport_steer.c decides), so that new connections go where
 * threads are free. */
static void steer_connections(parent_loop *pl, apr_time_t now)
{
    int g;

    if (!hyb_steer_due(now)) {
        return;
    }
    measure(pl);
    for (g = 0; g < pl->load.groups; g++) {
        pl->steer_free[g] = pl->load.group[g].free_threads;
        pl->steer_children[g] = pl->load.group[g].children;
    }
    hyb_steer_update(pl->steer_free, pl->steer_children);
}

/* The wall clock stepped back (an NTP step at boot, an operator's
 * date): a tick or look dated after now would hold spare management off
 * for as long as the step. */
static void follow_clock_back(parent_loop *pl, apr_time_t now)
{
    if (pl->next_tick - now > HYB_TICK) {
        pl->next_tick = now + HYB_TICK;
    }
    if (pl->last_maintenance > now) {
        pl->last_maintenance = now;
    }
}

/* Sleeps until the next tick, a child's exit or note, or the next
 * steering pass; returns 1 if a child said it is short of idle threads.
 * Early looks come HYB_EARLY_TICK apart at most.  A note that came too
 * soon after one is kept, and the parent sleeps until the next may be
 * taken; after an early look, further notes wait for the next one too,
 * without waking the parent one by one: a child of ThreadsPerChild 1 has
 * no idle thread whenever it serves, and 200 of them under load woke it
 * 330 times a second, 0.9 % of a CPU, to find enough spares.  (The notes
 * it read and could not act on were dropped then, which also slowed
 * bursts down.)  After a regular tick the first note wakes it at once. */
static int sleep_until_due(parent_loop *pl)
{
    apr_time_t now = apr_time_now();
    apr_interval_time_t wait, deaf;
    apr_interval_time_t steer = hyb_steer_max_sleep();

    follow_clock_back(pl, now);
    wait = pl->next_tick > now ? pl->next_tick - now : 0;
    deaf = pl->short_pending || pl->looked_early
           ? pl->last_maintenance + HYB_EARLY_TICK - now : 0;
    if (steer >= 0 && wait > steer) {
        wait = steer;
    }
    if (pl->short_pending && wait > deaf) {
        wait = deaf > 0 ? deaf : 0;      /* then the kept note's look */
    }
    return hyb_notes_wait(wait, deaf, hyb_retire_noted);
}

/* One pass of the main loop: sleep, reap, and maybe maintain. */
static void loop_once(parent_loop *pl)
{
    int early = 0;
    apr_time_t now;

    pl->short_pending |= sleep_until_due(pl);
    reap_children(pl);
    if (pl->fatal) {
        return;
    }
    hyb_retire_answer(&pl->load);
    now = apr_time_now();
    steer_connections(pl, now);
    if (now >= pl->next_tick) {
        pl->next_tick = now + HYB_TICK;
        pl->crash_respawns = 0;
        ap_update_global_status();
        if (++pl->ticks % 10 == 0) {
            ap_run_monitor(hyb_server.pconf, pl->s);
        }
    }
    else if (!pl->short_pending
             || now - pl->last_maintenance < HYB_EARLY_TICK) {
        return;
    }
    else {
        early = 1;
    }
    pl->short_pending = 0;
    pl->looked_early = early;
    if (pl->to_start > 0) {
        measure(pl);
        pl->to_start -= hyb_groups_spawn(&pl->load, pl->to_start);
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

    for (i = 0; i < hyb_proc_max_used(); i++) {
        if (hyb_slots[i].pid) {
            hyb_proc_retire(i);
        }
    }
}

/* The server is gone: what it left for other processes to read goes. */
static void remove_runtime_files(void)
{
    ap_remove_pid(hyb_server.pconf, ap_pid_fname);
    hyb_config_forget_running(hyb_server.pconf);
}

static void graceful_stop(parent_loop *pl)
{
    apr_time_t cutoff = ap_graceful_shutdown_timeout
        ? apr_time_now() + apr_time_from_sec(ap_graceful_shutdown_timeout)
        : 0;

    hyb_drain_mark_all(ap_listeners);
    ap_close_listeners();
    if (hyb_conf.strategy->stopping) {
        hyb_conf.strategy->stopping();
    }
    tell_children_graceful();
    remove_runtime_files();
    ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, ap_server_conf, HYBLOGNO(00056)
                 "caught " AP_SIG_GRACEFUL_STOP_STRING
                 ", shutting down gracefully");
    hyb_server.mpm->shutdown_pending = 0;
    while (hyb_proc_live(1) && !hyb_server.mpm->shutdown_pending
           && (!cutoff || apr_time_now() < cutoff)) {
        hyb_notes_wait(apr_time_from_msec(500), 0, hyb_retire_noted);
        reap_children(pl);
    }
    if (hyb_proc_live(1)) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, ap_server_conf,
                     HYBLOGNO(00057) "%d children still busy at the end of "
                     "GracefulShutdownTimeout (%ds); stopping them",
                     hyb_proc_live(1), ap_graceful_shutdown_timeout);
    }
    hyb_proc_reclaim_all();
}

static int stop_after_fatal(void)
{
    ap_log_error(APLOG_MARK, APLOG_ALERT, 0, ap_server_conf, HYBLOGNO(00058)
                 "a child returned a fatal error; stopping the server");
    hyb_proc_reclaim_all();
    remove_runtime_files();
    return !OK;
}

static int stop_now(void)
{
    hyb_proc_reclaim_all();
    remove_runtime_files();
    ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, ap_server_conf, HYBLOGNO(00059)
                 "caught SIGTERM, shutting down");
    return DONE;
}

static int restart(void)
{
    ++hyb_server.mpm->my_generation;
    ap_scoreboard_image->global->running_generation =
        hyb_server.mpm->my_generation;
    if (!hyb_server.mpm->is_ungraceful) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, ap_server_conf,
                     HYBLOGNO(00060) "Graceful restart requested, doing "
                     "restart");
        /* The old children go on serving while the config is re-read and
         * are told to go only then (hyb_parent_run): by that time the
         * listeners the new config dropped are marked closing, and the old
         * children drain them instead of letting them close on a full
         * queue. */
        pret->old_generation_pending = 1;
    }
    else {
        hyb_proc_reclaim_all();
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, ap_server_conf,
                     HYBLOGNO(00061) "SIGHUP received.  Attempting to "
                     "restart");
    }
    return OK;
}

static int finish_generation(parent_loop *pl)
{
    hyb_server.mpm->mpm_state = AP_MPMQ_STOPPING;
    pl->stopping = 1;

    if (pl->fatal) {
        return stop_after_fatal();
    }
    if (hyb_server.mpm->shutdown_pending && hyb_server.mpm->is_ungraceful) {
        return stop_now();
    }
    if (hyb_server.mpm->shutdown_pending) {
        graceful_stop(pl);
        return DONE;
    }
    return restart();
}

/* ------------------------------------------------------------------ */
/* Starting a generation                                               */

static void log_startup(server_rec *s, apr_pool_t *plog)
{
    const hyb_strategy *st = hyb_conf.strategy;
    const char *mutex = st->mutex_name ? st->mutex_name() : NULL;

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
                 hyb_conf.lim.threads_per_child, hyb_conf.lim.daemons_limit,
                 hyb_conf.lim.max_workers, st->name,
                 mutex ? ", accept mutex " : "", mutex ? mutex : "");
}

/* A fresh start (not after a graceful restart) creates the scoreboard. */
static int create_scoreboard(server_rec *s)
{
    if (hyb_server.mpm->was_graceful) {
        return OK;
    }
    if (ap_run_pre_mpm(s->process->pool, SB_SHARED) != OK) {
        hyb_server.mpm->mpm_state = AP_MPMQ_STOPPING;
        return !OK;
    }
    ap_scoreboard_image->global->running_generation =
        hyb_server.mpm->my_generation;
    hyb_config_note_running(hyb_server.pconf);
    return OK;
}

/* The first children: at least one per listener group.  After a graceful
 * restart the old children are told to go only now (see restart()). */
static void start_children(parent_loop *pl)
{
    int groups = pl->load.groups;

    pl->to_start = hyb_conf.lim.start_servers < groups
                   ? groups : hyb_conf.lim.start_servers;
    if (hyb_server.mpm->was_graceful) {
        pret->hold_off_spawn_ticks = 10;
    }
    if (pret->old_generation_pending) {
        pret->old_generation_pending = 0;
        tell_children_graceful();
    }
    measure(pl);
    pl->to_start -= hyb_groups_spawn(&pl->load, pl->to_start);
}

int hyb_parent_run(apr_pool_t *pconf, apr_pool_t *plog, server_rec *s)
{
    parent_loop pl;

    memset(&pl, 0, sizeof(pl));
    pl.s = s;
    hyb_load_init(&pl.load, hyb_server.pconf);
    pl.steer_free = apr_pcalloc(hyb_server.pconf, sizeof(int) * pl.load.groups);
    pl.steer_children = apr_pcalloc(hyb_server.pconf,
                                    sizeof(int) * pl.load.groups);
    ap_log_pid(hyb_server.pconf, ap_pid_fname);
    if (create_scoreboard(s) != OK) {
        return !OK;
    }
    hyb_stats_publish_generation(hyb_server.mpm->my_generation);
    ap_unixd_mpm_set_signals(hyb_server.pconf, hyb_server.one_process);
    if (hyb_server.one_process) {
        hyb_child_main(0, 0);
    }
    hyb_notes_install_sigchld(hyb_server.pconf);
    start_children(&pl);
    log_startup(s, plog);
    hyb_server.mpm->mpm_state = AP_MPMQ_RUNNING;
    pl.next_tick = apr_time_now() + HYB_TICK;

    while (!hyb_server.mpm->restart_pending
           && !hyb_server.mpm->shutdown_pending && !pl.fatal) {
        loop_once(&pl);
    }
    return finish_generation(&pl);
}
