/* hybrid_proc.c: mechanism for the parent's children.
 *
 * Owns: the parent-private slot table (retained data), forking a child
 * into a slot with back-off when fork fails, signalling and retiring a
 * child, recording its death, and reclaiming every child on a hard stop.
 * Pids come only from the parent's own table, never from the scoreboard,
 * so a child scribbling on shared memory cannot make the root parent
 * signal or wait for anything it did not start.
 * Policy (when to do which) is in hybrid_parent.c and hybrid_groups.c.
 */

#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_main.h"
#include "mpm_common.h"
#include "scoreboard.h"

#include "hybrid_accept.h"
#include "hybrid_child.h"
#include "hybrid_config.h"
#include "hybrid_counters.h"
#include "hybrid_proc.h"
#include "hybrid_server.h"

typedef struct {
    int nslots;
    hyb_slot *slots;
    int max_daemon_used;
    int fork_failures;        /* consecutive; drives back-off */
    apr_time_t next_fork_try;
} proc_retained;

static proc_retained *pr;
hyb_slot *hyb_slots;

void hyb_proc_init(int first_server_limit)
{
    static const char key[] = "mpm_hybrid_proc";

    pr = ap_retained_data_get(key);
    if (!pr) {
        pr = ap_retained_data_create(key, sizeof(*pr));
        pr->nslots = first_server_limit;
        pr->slots = ap_retained_data_create("mpm_hybrid_slots",
                                            sizeof(hyb_slot)
                                            * first_server_limit);
    }
    hyb_slots = pr->slots;
}

int hyb_proc_slots(void)
{
    return pr->nslots;
}

int hyb_proc_max_used(void)
{
    return pr ? pr->max_daemon_used : 0;
}

static void scoreboard_set_threads(int slot, int status)
{
    int t;

    for (t = 0; t < hyb_conf.lim.thread_limit; t++) {
        ap_update_child_status_from_indexes(slot, t,
            t < hyb_conf.lim.threads_per_child ? status : SERVER_DEAD, NULL);
    }
}

int hyb_proc_find(pid_t pid)
{
    int i;

    for (i = 0; i < pr->max_daemon_used; i++) {
        if (hyb_slots[i].pid == pid) {
            return i;
        }
    }
    return -1;
}

int hyb_proc_free_slot(void)
{
    int i;

    for (i = 0; i < hyb_conf.lim.server_limit; i++) {
        if (!hyb_slots[i].pid) {
            return i;
        }
    }
    return -1;
}

int hyb_proc_live(int include_quiescing)
{
    int i, n = 0;

    for (i = 0; i < pr->max_daemon_used; i++) {
        const hyb_slot *ps = &hyb_slots[i];

        if (ps->pid && (include_quiescing || !ps->quiescing)) {
            n++;
        }
    }
    return n;
}

#define FORK_BACKOFF_MAX apr_time_from_sec(10)

/* A back-off further off than it can be is the wall clock stepping back:
 * then try now. */
int hyb_proc_may_fork(void)
{
    apr_time_t now = apr_time_now();

    return now >= pr->next_fork_try
           || pr->next_fork_try - now > FORK_BACKOFF_MAX;
}

int hyb_proc_fork_failing(void)
{
    return pr->fork_failures > 0;
}

static void fork_failed(int slot, apr_status_t err)
{
    apr_time_t backoff;

    scoreboard_set_threads(slot, SERVER_DEAD);
    pr->fork_failures++;
    /* 100 ms, 200 ms, ... capped at 10 s: no busy loop, and the server
     * keeps serving with the children it has. */
    backoff = apr_time_from_msec(100) << (pr->fork_failures < 7
                                          ? pr->fork_failures - 1 : 6);
    if (backoff > FORK_BACKOFF_MAX) {
        backoff = FORK_BACKOFF_MAX;
    }
    pr->next_fork_try = apr_time_now() + backoff;
    if (pr->fork_failures == 1) {
        ap_log_error(APLOG_MARK, APLOG_ERR, err, ap_server_conf,
                     HYBLOGNO(00040) "fork: unable to start a child; "
                     "serving with the children there are and retrying with "
                     "back-off (check RLIMIT_NPROC / ulimit -u and memory)");
    }
}

static void note_started(int slot, pid_t pid)
{
    hyb_slot *ps = &hyb_slots[slot];
    process_score *sb = ap_get_scoreboard_process(slot);

    ps->pid = pid;
    ps->started = apr_time_now();
    ps->spawned++;
    sb->pid = pid;
    sb->generation = ps->generation;
    sb->quiescing = 0;
    ap_run_child_status(ap_server_conf, pid, ps->generation, slot,
                        MPM_CHILD_STARTED);
    hyb_stats_note_spawn(slot, pid, ps->generation, ps->group,
                         ps->spawned - 1, ps->started);
    if (pr->fork_failures) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, ap_server_conf,
                     HYBLOGNO(00041) "fork works again after %d failures",
                     pr->fork_failures);
        pr->fork_failures = 0;
    }
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, ap_server_conf, HYBLOGNO(00042)
                 "Child %d started: pid %" APR_PID_T_FMT ", gen %d, "
                 "strategy %s, group %d", slot, pid, ps->generation,
                 hyb_conf.strategy->name, ps->group);
}

int hyb_proc_spawn(int slot, int group)
{
    hyb_slot *ps = &hyb_slots[slot];
    pid_t pid;

    if (slot + 1 > pr->max_daemon_used) {
        pr->max_daemon_used = slot + 1;
    }
    ps->generation = hyb_server.mpm->my_generation;
    ps->group = group;
    ps->quiescing = 0;
    ps->retire_wanted = 0;
    ps->retire_notes = 0;
    ps->ready_noted = 0;
    scoreboard_set_threads(slot, SERVER_STARTING);

    hyb_child_block_signals(SIG_BLOCK);
    pid = fork();
    if (pid == 0) {
        hyb_child_main(slot, group);   /* does not return */
    }
    hyb_child_block_signals(SIG_UNBLOCK);
    if (pid < 0) {
        fork_failed(slot, errno);
        return -1;
    }
    note_started(slot, pid);
    return 0;
}

void hyb_proc_signal(int slot, int sig)
{
    pid_t pid = hyb_slots[slot].pid;

    if (pid > 0 && kill(pid, sig) < 0 && errno != ESRCH) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, errno, ap_server_conf,
                     HYBLOGNO(00043) "cannot signal child %" APR_PID_T_FMT,
                     pid);
    }
}

void hyb_proc_retire(int slot)
{
    hyb_slot *ps = &hyb_slots[slot];

    ps->retire_wanted = 0;
    ps->quiescing = 1;
    ap_get_scoreboard_process(slot)->quiescing = 1;
    hyb_stats_note_state(slot, HYBRID_SLOT_GRACEFUL);
    hyb_proc_signal(slot, AP_SIG_GRACEFUL);
}

void hyb_proc_note_exit(int slot, apr_exit_why_e why, int status)
{
    hyb_slot *ps = &hyb_slots[slot];
    process_score *sb = ap_get_scoreboard_process(slot);

    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, ap_server_conf, HYBLOGNO(00044)
                 "Child %d stopped: pid %" APR_PID_T_FMT ", gen %d, %s %d",
                 slot, ps->pid, ps->generation,
                 (why & APR_PROC_SIGNAL) ? "signal" : "exit", status);
    scoreboard_set_threads(slot, SERVER_DEAD);
    ap_run_child_status(ap_server_conf, ps->pid, ps->generation, slot,
                        MPM_CHILD_EXITED);
    sb->pid = 0;
    sb->quiescing = 0;
    hyb_stats_note_exit(slot, why, status);
    ps->pid = 0;
    ps->quiescing = 0;
}

/* Reaps one of our children if it has exited; returns 1 if it did. */
static int reap_slot(int slot)
{
    int status;
    pid_t pid = waitpid(hyb_slots[slot].pid, &status, WNOHANG);

    if (pid <= 0) {
        if (pid < 0 && errno == ECHILD) {
            hyb_proc_note_exit(slot, APR_PROC_EXIT, 0);
            return 1;
        }
        return 0;
    }
    if (WIFSIGNALED(status)) {
        hyb_proc_note_exit(slot, APR_PROC_SIGNAL, WTERMSIG(status));
    }
    else {
        hyb_proc_note_exit(slot, APR_PROC_EXIT, WEXITSTATUS(status));
    }
    return 1;
}

static void signal_all(int sig)
{
    int i;

    for (i = 0; i < pr->max_daemon_used; i++) {
        hyb_proc_signal(i, sig);
    }
}

/* SIGTERM now and again at 3 s and 6 s, SIGKILL at 9 s, and give up on
 * stragglers at 10 s, as httpd's own reclaim does, but polling every
 * 20 ms so a quick exit is noticed quickly. */
void hyb_proc_reclaim_all(void)
{
    apr_time_t start = apr_time_now();
    int next_step = 1, i, left;

    signal_all(SIGTERM);
    for (;;) {
        apr_interval_time_t waited = apr_time_now() - start;

        left = 0;
        for (i = 0; i < pr->max_daemon_used; i++) {
            if (hyb_slots[i].pid && !reap_slot(i)) {
                left++;
            }
        }
        if (!left || waited > apr_time_from_sec(10)) {
            break;
        }
        if (next_step <= 3 && waited >= apr_time_from_sec(3 * next_step)) {
            signal_all(next_step == 3 ? SIGKILL : SIGTERM);
            next_step++;
        }
        apr_sleep(apr_time_from_msec(20));
    }
    if (left) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, ap_server_conf,
                     HYBLOGNO(00045) "%d children did not exit after "
                     "SIGKILL; giving up on them", left);
    }
    apr_proc_other_child_refresh_all(APR_OC_REASON_RESTART);
}
