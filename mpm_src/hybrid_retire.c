/* hybrid_retire.c: MaxConnectionsPerChild, both ends.
 *
 * The child: its budget is MaxConnectionsPerChild lowered by up to a
 * quarter at random, so that children started together do not all
 * recycle together.  With one shared queue the child stops accepting when
 * it is used up (the other children take the queue) and tells the
 * parent, which starts a replacement at once.  With several listener
 * groups the child's group must never be without a taker: it tells the
 * parent a quarter of the budget early, so the replacement is usually
 * running before the budget is spent; at the end it stops if its group
 * has another child, and otherwise goes on accepting until the parent
 * tells it to go, but for no more than that quarter again (a parent
 * starved of CPU must not let the limit slip further) unless it holds an
 * idle keep-alive connection, which would keep its group without a taker
 * for KeepAliveTimeout.
 *
 * The parent: a retiring note only marks the slot (the slot number is the
 * child's word, so it only selects an entry of the parent's own table;
 * the worst a lying child can do is get another child replaced early).
 * On its next pass the parent starts the replacement in the same group
 * first, then retires the child.  It publishes, for the children, how
 * many children each group has: parent-written, child-read, so the trust
 * runs the safe way.
 */

#include <unistd.h>

#include "apr_shm.h"

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_main.h"
#include "mpm_common.h"
#include "scoreboard.h"

#include "hybrid_accept.h"
#include "hybrid_child.h"
#include "hybrid_config.h"
#include "hybrid_notes.h"
#include "hybrid_proc.h"
#include "hybrid_retire.h"
#include "hybrid_server.h"

/* ------------------------------------------------------------------ */
/* Children per group, published by the parent                         */

static volatile apr_uint32_t *group_children;
static int group_slots;

void hyb_retire_open(int slots)
{
    static const char key[] = "mpm_hybrid_group_children";
    apr_shm_t **shm = ap_retained_data_get(key);

    if (!shm) {
        shm = ap_retained_data_create(key, sizeof(*shm));
        if (apr_shm_create(shm, sizeof(apr_uint32_t) * slots, NULL,
                           ap_pglobal) != APR_SUCCESS) {
            *shm = NULL;
        }
    }
    group_children = *shm ? apr_shm_baseaddr_get(*shm) : NULL;
    group_slots = slots;
}

void hyb_retire_publish(const hyb_load *load)
{
    int g;

    for (g = 0; group_children && g < load->groups && g < group_slots; g++) {
        __atomic_store_n(&group_children[g],
                         (apr_uint32_t)load->group[g].children,
                         __ATOMIC_RELAXED);
    }
}

static int group_has_others(int group)
{
    return group_children && group >= 0 && group < group_slots
           && __atomic_load_n(&group_children[group], __ATOMIC_RELAXED) > 1;
}

/* ------------------------------------------------------------------ */
/* The parent's answer                                                 */

void hyb_retire_noted(int slot)
{
    if (slot >= 0 && slot < hyb_proc_max_used() && hyb_slots[slot].pid) {
        hyb_slots[slot].retire_wanted = 1;
        hyb_slots[slot].retire_notes++;
    }
}

/* Threads of a slot busy with a connection (keep-alive included).  The
 * scoreboard is the children's: this only decides when to retire. */
static int slot_busy_threads(int slot)
{
    int t, n = 0;

    for (t = 0; t < hyb_conf.lim.threads_per_child; t++) {
        int st = ap_scoreboard_image->servers[slot][t].status;

        n += st > SERVER_READY && st != SERVER_GRACEFUL;
    }
    return n;
}

/* With several listener groups the replacement comes first.  If no slot
 * is free for it, the child is retired the moment it holds no
 * connection: it then exits at once, its slot frees and the group is
 * refilled within milliseconds, instead of waiting out a keep-alive
 * connection.  With one shared queue the child stopped accepting by
 * itself and is only marked here. */
static void answer(int slot, hyb_load *load)
{
    hyb_slot *ps = &hyb_slots[slot];
    int spare;

    if (!ps->pid || ps->quiescing) {
        ps->retire_wanted = 0;
        return;
    }
    if (load->groups > 1) {
        spare = hyb_proc_may_fork() ? hyb_proc_free_slot() : -1;
        if (spare >= 0 && hyb_proc_spawn(spare, ps->group) == 0) {
            load->group[ps->group].children++;
        }
        else if (load->group[ps->group].children < 2
                 && slot_busy_threads(slot) > 0 && ps->retire_notes < 4) {
            /* its group's only child: wait until it is idle, but not
             * beyond ~50 connections over its limit */
            return;
        }
    }
    hyb_proc_retire(slot);
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, ap_server_conf, HYBLOGNO(00065)
                 "Child %d retiring: pid %" APR_PID_T_FMT ", group %d "
                 "(MaxConnectionsPerChild)", slot, ps->pid, ps->group);
}

void hyb_retire_answer(hyb_load *load)
{
    int i;

    for (i = 0; i < hyb_proc_max_used(); i++) {
        if (hyb_slots[i].retire_wanted) {
            hyb_load_measure(load);
            hyb_retire_publish(load);
            answer(i, load);
        }
    }
}

/* ------------------------------------------------------------------ */
/* The child's budget (one child per process)                          */

static volatile apr_int32_t conns_left;
static int limit_conns;
static apr_int32_t notice_at;     /* conns_left at which the parent hears */

void hyb_retire_child_init(hyb_child *ch)
{
    int max = ap_max_requests_per_child;

    limit_conns = max > 0;
    if (max > 0) {
        int jitter = max >= 4 ? (int)(getpid() % (max / 4)) : 0;

        conns_left = max - jitter;
        notice_at = (max - jitter) / 4;
    }
}

int hyb_retire_spent(const hyb_child *ch)
{
    return limit_conns && __atomic_load_n(&conns_left, __ATOMIC_RELAXED) <= 0;
}

/* Does a thread of this child sit in an idle keep-alive connection?  Such
 * a child would take long to exit once it stops accepting. */
static int holds_keepalive(const hyb_child *ch)
{
    int t;

    for (t = 0; t < hyb_conf.lim.threads_per_child; t++) {
        if (ap_scoreboard_image->servers[ch->slot][t].status
            == SERVER_BUSY_KEEPALIVE) {
            return 1;
        }
    }
    return 0;
}

static void retiring(hyb_child *ch)
{
    hyb_child_request_stop(ch, HYB_STOP_GRACEFUL);
    hyb_notes_send(ch->slot, HYB_NOTE_RETIRING);
}

void hyb_retire_spend(hyb_child *ch)
{
    apr_int32_t left;

    if (!limit_conns) {
        return;
    }
    left = __atomic_sub_fetch(&conns_left, 1, __ATOMIC_SEQ_CST);
    if (hyb_accept_groups() == 1) {
        if (left == 0) {
            retiring(ch);
        }
        return;
    }
    if (!hyb_child_stopping(ch)
        && ((left == 0 && group_has_others(ch->group))
            || (left <= -notice_at && !holds_keepalive(ch)))) {
        retiring(ch);
        return;
    }
    if (left == notice_at || (left < notice_at && -left % 16 == 0)) {
        hyb_notes_send(ch->slot, HYB_NOTE_RETIRING);
    }
}
