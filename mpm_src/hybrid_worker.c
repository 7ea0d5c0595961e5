/* hybrid_worker.c: one worker thread (or a prefork-style child's only
 * thread): take a connection, serve it, repeat until told to stop.
 *
 * Owns: the per-thread transaction pool, scoreboard state of the thread,
 * idle/busy accounting, the MaxConnectionsPerChild budget, and telling the
 * parent early when this child has no idle thread left.  How a connection
 * is taken is the strategy's business (hyb_strategy.accept_one); only one
 * thread per child runs it at a time (the accept turn), so a child with
 * no idle thread stops taking connections until one frees up.
 */

#define HYB_SHORT_NOTICE_GAP apr_time_from_msec(250)

static void hyb_notify_parent(hyb_child *ch, char type)
{
    char note[HYB_NOTE_SIZE] = { type, (char)(ch->slot & 0xff),
                                 (char)((ch->slot >> 8) & 0xff),
                                 (char)((ch->slot >> 16) & 0xff) };

    if (!retained->one_process
        && write(retained->notify_fd[1], note, sizeof(note)) < 0) {
        /* pipe full: the parent has plenty to wake up for */
    }
}

/* Tells the parent, at most every 250 ms per child, that this child just
 * ran out of idle threads, so it can spawn before its next tick. */
static void notify_parent_short(hyb_child *ch)
{
    apr_time_t now = apr_time_now();

    if (now - ch->last_short_notice >= HYB_SHORT_NOTICE_GAP) {
        ch->last_short_notice = now;
        hyb_notify_parent(ch, HYB_NOTE_SHORT);
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

/* The steering program's count of free threads in this child's group
 * (reuseport_steer.c): a thread counts while it waits for a connection.
 * The program takes 1 off when it sends a connection to the group, so a
 * thread that accepts one leaves quietly; one that stops without a
 * connection takes its 1 back. */
static void room_wait(hyb_thread *t)
{
    hyb_child *ch = t->child;

    /* A child past MaxConnectionsPerChild waits for its replacement: it
     * takes what its group is sent, but the group is not offered as free
     * on its account. */
    if (hyb_group_room && !t->counted_in_room && !hyb_child_stopping(ch)
        && !(ch->limit_conns
             && __atomic_load_n(&ch->conns_left, __ATOMIC_RELAXED) <= 0)) {
        t->counted_in_room = 1;
        __atomic_add_fetch(&hyb_group_room[ch->group], 1, __ATOMIC_RELAXED);
    }
}

static void room_took_connection(hyb_thread *t)
{
    t->counted_in_room = 0;
}

static void room_leave(hyb_thread *t)
{
    if (t->counted_in_room) {
        t->counted_in_room = 0;
        __atomic_sub_fetch(&hyb_group_room[t->child->group], 1,
                           __ATOMIC_RELAXED);
    }
}

static hyb_accept_rc take_connection(hyb_child *ch, apr_socket_t **csd,
                                     apr_pool_t *ptrans)
{
    hyb_accept_rc rc;

    if (ch->threaded) {
        apr_thread_mutex_lock(ch->accept_turn);
    }
    rc = hyb_child_stopping(ch) ? HYB_ACCEPT_STOP
                                : conf.strategy->accept_one(ch, csd, ptrans);
    if (ch->threaded) {
        apr_thread_mutex_unlock(ch->accept_turn);
    }
    return rc;
}

/* Does a thread of this child sit in an idle keep-alive connection?  Such
 * a child would take long to exit once it stops accepting. */
static int holds_keepalive(const hyb_child *ch)
{
    int t;

    for (t = 0; t < conf.threads_per_child; t++) {
        if (ap_scoreboard_image->servers[ch->slot][t].status
            == SERVER_BUSY_KEEPALIVE) {
            return 1;
        }
    }
    return 0;
}

/* Counts the connection against MaxConnectionsPerChild.  With one shared
 * queue the child stops accepting when it is used up (the other children
 * take the queue) and tells the parent, which starts a replacement at
 * once.  With several listener groups the child's group must never be
 * without a taker: it tells the parent a quarter of the budget early, so
 * the replacement is usually running before the budget is spent; at the
 * end it stops if the parent says its group has another child, and
 * otherwise goes on accepting until the parent tells it to go, but for
 * no more than that quarter again (a parent starved of CPU must not let
 * the limit slip further) unless it holds an idle keep-alive connection,
 * which would keep its group without a taker for KeepAliveTimeout. */
static void spend_connection(hyb_child *ch)
{
    apr_int32_t left;

    if (!ch->limit_conns) {
        return;
    }
    left = __atomic_sub_fetch(&ch->conns_left, 1, __ATOMIC_SEQ_CST);
    if (hyb_groups() == 1) {
        if (left == 0) {
            hyb_child_request_stop(ch, HYB_STOP_GRACEFUL);
            hyb_notify_parent(ch, HYB_NOTE_RETIRING);
        }
        return;
    }
    if (!hyb_child_stopping(ch)
        && ((left == 0 && hyb_group_has_others(ch->group))
            || (left <= -ch->notice_at && !holds_keepalive(ch)))) {
        hyb_child_request_stop(ch, HYB_STOP_GRACEFUL);
        hyb_notify_parent(ch, HYB_NOTE_RETIRING);
        return;
    }
    if (left == ch->notice_at || (left < ch->notice_at && -left % 16 == 0)) {
        hyb_notify_parent(ch, HYB_NOTE_RETIRING);
    }
}

static void serve_connection(hyb_thread *t, apr_socket_t *csd,
                             apr_pool_t *ptrans)
{
    hyb_child *ch = t->child;
    apr_bucket_alloc_t *ba = apr_bucket_alloc_create(ptrans);
    ap_sb_handle_t *sbh;
    apr_os_sock_t fd;
    conn_rec *c;
    long conn_id = (long)ch->slot * conf.thread_limit + t->num;

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
        room_wait(t);
        ap_lingering_close(c);
    }
    else {
        apr_socket_close(csd);
    }
    t->active_fd = -1;
}

static apr_pool_t *create_ptrans(hyb_child *ch)
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

/* Takes one connection still queued on a closing listener; gives up on
 * an empty queue, on a listener already let go of (ENOTSOCK), or when the
 * stop turns immediate. */
static int accept_queued_on_closing(hyb_child *ch, int i, apr_socket_t **csd,
                                    apr_pool_t *ptrans)
{
    apr_status_t rv;

    do {
        if (__atomic_load_n(&ch->stop, __ATOMIC_SEQ_CST) == HYB_STOP_NOW) {
            return 0;
        }
        rv = apr_socket_accept(csd, ch->listen_lrs[i]->sd, ptrans);
    } while (APR_STATUS_IS_EINTR(rv) || APR_STATUS_IS_ECONNABORTED(rv));
    if (rv == APR_SUCCESS) {
        HYB_COUNT(ch, accepts, 1);
        return 1;
    }
    return 0;
}

/* Graceful stop: serve what is still queued on this child's closing
 * listeners, then let go of them, so that their last reference closes on
 * an empty queue (hybrid_drain.c).  Every free worker joins in. */
static void drain_closing_listeners(hyb_thread *t, apr_pool_t *ptrans)
{
    hyb_child *ch = t->child;
    apr_socket_t *csd;
    int i, served = 0;

    for (i = 0; i < ch->nlisten_fds; i++) {
        if (__atomic_load_n(&ch->listen_released[i], __ATOMIC_SEQ_CST)
            || !hyb_listener_closing(ch->listen_fds[i])) {
            continue;
        }
        while (accept_queued_on_closing(ch, i, &csd, ptrans)) {
            set_idle(ch, -1);
            serve_connection(t, csd, ptrans);
            set_idle(ch, 1);
            apr_pool_clear(ptrans);
            served++;
        }
    }
    release_listeners(ch, 1);
    if (served) {
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, ap_server_conf,
                     HYBLOGNO(00102) "child %d thread %d: served %d "
                     "connections queued on closing listeners", ch->slot,
                     t->num, served);
    }
}

static void *hyb_worker_run(hyb_thread *t)
{
    hyb_child *ch = t->child;
    apr_pool_t *ptrans = t->ptrans ? t->ptrans : create_ptrans(ch);
    apr_socket_t *csd = NULL;
    hyb_accept_rc rc = HYB_ACCEPT_RETRY;

    set_idle(ch, 1);
    while (!hyb_child_stopping(ch)) {
        ap_update_child_status_from_indexes(ch->slot, t->num, SERVER_READY,
                                            NULL);
        room_wait(t);
        rc = take_connection(ch, &csd, ptrans);
        if (rc == HYB_ACCEPT_STOP || rc == HYB_ACCEPT_SICK) {
            break;
        }
        if (rc == HYB_ACCEPT_OK) {
            room_took_connection(t);
            set_idle(ch, -1);
            spend_connection(ch);
            serve_connection(t, csd, ptrans);
            set_idle(ch, 1);
        }
        apr_pool_clear(ptrans);
    }
    room_leave(t);
    if (rc == HYB_ACCEPT_SICK) {
        ch->sick = 1;
        hyb_child_request_stop(ch, HYB_STOP_GRACEFUL);
    }
    else {
        drain_closing_listeners(t, ptrans);
    }
    set_idle(ch, -1);
    ap_update_child_status_from_indexes(ch->slot, t->num,
                                        hyb_child_stopping(ch)
                                            ? SERVER_GRACEFUL : SERVER_DEAD,
                                        NULL);
    __atomic_sub_fetch(&ch->live_threads, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static void *APR_THREAD_FUNC hyb_worker_thread(apr_thread_t *thd, void *data)
{
    hyb_worker_run(data);
    apr_thread_exit(thd, APR_SUCCESS);
    return NULL;
}
