/* hybrid_worker.c: one worker thread (or a prefork-style child's only
 * thread): take a connection, serve it, repeat until told to stop.
 *
 * Owns: the per-thread transaction pool, the thread's scoreboard state,
 * idle/busy accounting, and telling the parent early when this child has
 * no idle thread left.  How a connection is taken is the strategy's
 * business (hyb_strategy.accept_one); only one thread per child runs it
 * at a time (the accept turn), so a child with no idle thread stops
 * taking connections until one frees up.  Budget (hybrid_retire.c),
 * steering room (reuseport_steer.c) and draining (hybrid_drain.c) are
 * called at their points of the loop.
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
#include "hybrid_drain.h"
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

static hyb_accept_rc take_connection(hyb_child *ch, apr_socket_t **csd,
                                     apr_pool_t *ptrans)
{
    hyb_accept_rc rc;

    if (ch->threaded) {
        apr_thread_mutex_lock(ch->accept_turn);
    }
    rc = hyb_child_stopping(ch)
         ? HYB_ACCEPT_STOP : hyb_conf.strategy->accept_one(ch, csd, ptrans);
    if (ch->threaded) {
        apr_thread_mutex_unlock(ch->accept_turn);
    }
    return rc;
}

static void serve_connection(hyb_thread *t, apr_socket_t *csd,
                             apr_pool_t *ptrans)
{
    hyb_child *ch = t->child;
    apr_bucket_alloc_t *ba = apr_bucket_alloc_create(ptrans);
    ap_sb_handle_t *sbh;
    apr_os_sock_t fd;
    conn_rec *c;
    long conn_id = (long)ch->slot * hyb_conf.lim.thread_limit + t->num;

    apr_os_sock_get(&fd, csd);
    t->active_fd = fd;
    ap_create_sb_handle(&sbh, ptrans, ch->slot, t->num);
    c = ap_run_create_connection(ptrans, ap_server_conf, csd, conn_id, sbh,
                                 ba);
    if (c) {
        ap_process_connection(c, csd);
        /* The client may reconnect as soon as it sees the close, before
         * the lingering close is over: count this thread as free for
         * steering already, so that the new connection comes back here
         * instead of to a group with no free thread. */
        hyb_steer_room_wait(t);
        ap_lingering_close(c);
    }
    else {
        apr_socket_close(csd);
    }
    t->active_fd = -1;
}

void hyb_worker_serve(hyb_thread *t, apr_socket_t *csd, apr_pool_t *ptrans)
{
    set_idle(t->child, -1);
    serve_connection(t, csd, ptrans);
    set_idle(t->child, 1);
}

apr_pool_t *hyb_worker_make_ptrans(hyb_child *ch)
{
    apr_allocator_t *allocator;
    apr_pool_t *ptrans;

    /* Each thread owns an allocator, capped by MaxMemFree, so threads
     * never contend on memory and idle memory is given back. */
    apr_allocator_create(&allocator);
    apr_allocator_max_free_set(allocator, ap_max_mem_free);
    apr_pool_create_ex(&ptrans, ch->pool, NULL, allocator);
    apr_allocator_owner_set(allocator, ptrans);
    apr_pool_tag(ptrans, "transaction");
    return ptrans;
}

void hyb_worker_run(hyb_thread *t)
{
    hyb_child *ch = t->child;
    apr_pool_t *ptrans = t->ptrans ? t->ptrans : hyb_worker_make_ptrans(ch);
    apr_socket_t *csd = NULL;
    hyb_accept_rc rc = HYB_ACCEPT_RETRY;

    set_idle(ch, 1);
    while (!hyb_child_stopping(ch)) {
        ap_update_child_status_from_indexes(ch->slot, t->num, SERVER_READY,
                                            NULL);
        hyb_steer_room_wait(t);
        rc = take_connection(ch, &csd, ptrans);
        if (rc == HYB_ACCEPT_STOP || rc == HYB_ACCEPT_SICK) {
            break;
        }
        if (rc == HYB_ACCEPT_OK) {
            hyb_steer_room_took(t);
            set_idle(ch, -1);
            hyb_retire_spend(ch);
            serve_connection(t, csd, ptrans);
            set_idle(ch, 1);
        }
        apr_pool_clear(ptrans);
    }
    hyb_steer_room_leave(t);
    if (rc == HYB_ACCEPT_SICK) {
        ch->sick = 1;
        hyb_child_request_stop(ch, HYB_STOP_GRACEFUL);
    }
    else {
        hyb_drain_serve_queued(t, ptrans);
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
