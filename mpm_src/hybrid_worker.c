/* hybrid_worker.c: one worker thread (or a prefork-style child's only
 * thread): wait in the child's poller, do what it hands back (a new
 * connection, a parked one that is ready), repeat until the child is done.
 *
 * Owns: the thread's scoreboard state, idle/busy accounting, and telling
 * the parent early when this child has no idle thread left.  Only idle
 * threads wait, so a child with no idle thread takes no connection until
 * one frees up.  The connection path is hybrid_conn.c's; budget
 * (hybrid_retire.c), steering room (reuseport_steer.c) and draining
 * (hybrid_drain.c) are called at their points of the loop.
 */

#include "apr_thread_mutex.h"
#include "apr_portable.h"

#include "httpd.h"
#include "http_config.h"
#include "http_connection.h"
#include "http_main.h"
#include "mpm_common.h"
#include "scoreboard.h"

#include "hybrid_accept.h"
#include "hybrid_child.h"
#include "hybrid_config.h"
#include "hybrid_conn.h"
#include "hybrid_drain.h"
#include "hybrid_poller.h"
#include "hybrid_pools.h"
#include "hybrid_notes.h"
#include "hybrid_retire.h"
#include "hybrid_worker.h"
#include "reuseport_steer.h"

#define HYB_SHORT_NOTICE_GAP apr_time_from_msec(250)

/* Tells the parent, at most every 250 ms per child, that this child just
 * ran out of idle threads, so it can spawn before its next tick. */
static void notify_parent_short(hyb_child *ch)
{
    apr_time_t now = apr_time_now();

    if (now - ch->last_short_notice >= HYB_SHORT_NOTICE_GAP) {
        ch->last_short_notice = now;
        hyb_notes_send(ch->slot, HYB_NOTE_SHORT);
    }
}

static void set_idle(hyb_child *ch, int delta)
{
    apr_uint32_t idle = __atomic_add_fetch(&ch->idle_threads, delta,
                                           __ATOMIC_RELAXED);

    if (delta < 0 && idle == 0 && !hyb_child_stopping(ch)) {
        notify_parent_short(ch);
    }
}

void hyb_worker_serve(hyb_thread *t, apr_socket_t *csd, apr_pool_t *pool)
{
    set_idle(t->child, -1);
    hyb_conn_start(t, csd, pool);
    set_idle(t->child, 1);
}

/* One thing the child's wait handed this thread. */
static void handle(hyb_thread *t, const hyb_event *ev)
{
    hyb_child *ch = t->child;

    if (ev->kind == HYB_EV_NEW) {
        hyb_steer_room_took(t);
        set_idle(ch, -1);
        hyb_retire_spend(ch);
        hyb_conn_start(t, ev->csd, ev->pool);
        set_idle(ch, 1);
    }
    else if (ev->kind == HYB_EV_CONN) {
        /* not the new connection steering counted this thread for */
        hyb_steer_room_leave(t);
        set_idle(ch, -1);
        hyb_conn_resume(t, ev->conn);
        set_idle(ch, 1);
    }
}

void hyb_worker_run(hyb_thread *t)
{
    hyb_child *ch = t->child;
    hyb_event ev = { HYB_EV_NONE, NULL, NULL, NULL };
    int drained = 0;

#if AP_HAS_THREAD_LOCAL
    if (!t->thd) {
        t->thd = ap_thread_current();   /* ThreadsPerChild 1: main thread */
    }
#endif
    if (!t->ptrans) {
        t->ptrans = hyb_pool_new(t);
    }
    set_idle(ch, 1);
    for (;;) {
        if (hyb_child_stopping(ch) && !drained) {
            drained = 1;
            hyb_steer_room_leave(t);
            hyb_drain_serve_queued(t);
        }
        ap_update_child_status_from_indexes(ch->slot, t->num, SERVER_READY,
                                            NULL);
        if (!hyb_child_stopping(ch)) {
            hyb_steer_room_wait(t);
        }
        hyb_poller_next(t, &ev);
        if (ev.kind == HYB_EV_EXIT || ev.kind == HYB_EV_SICK) {
            break;
        }
        handle(t, &ev);
    }
    hyb_steer_room_leave(t);
    if (ev.kind == HYB_EV_SICK) {
        ch->sick = 1;
        hyb_child_request_stop(ch, HYB_STOP_GRACEFUL);
    }
    set_idle(ch, -1);
    ap_update_child_status_from_indexes(ch->slot, t->num,
                                        hyb_child_stopping(ch)
                                            ? SERVER_GRACEFUL : SERVER_DEAD,
                                        NULL);
    __atomic_sub_fetch(&ch->live_threads, 1, __ATOMIC_SEQ_CST);
}

void *APR_THREAD_FUNC hyb_worker_thread(apr_thread_t *thd, void *data)
{
    hyb_worker_run(data);
    apr_thread_exit(thd, APR_SUCCESS);
    return NULL;
}
