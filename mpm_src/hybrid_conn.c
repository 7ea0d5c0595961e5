/* hybrid_conn.c: the connection path (hybrid_conn.h).
 *
 * Owns: making the conn_rec, running http_core's process_connection
 * hooks one request at a time, and acting on the state they leave:
 *
 *   PROCESSING        read and serve the next request
 *   WRITE_COMPLETION  flush what the core output filter holds; if it
 *                     cannot (the client reads slowly), park for POLLOUT
 *                     with Timeout; then keep-alive or linger
 *   KEEPALIVE         park for POLLIN with KeepAliveTimeout: the
 *                     connection holds no thread until its next request
 *   LINGER            start the lingering close (FIN sent), then leave
 *                     it to the lingering list (hybrid_linger.c) until
 *                     the client closes: 2 s after the last read, 30 s
 *                     in all, as ap_lingering_close bounds it
 *   SUSPENDED         a module owns the connection now
 *
 * as httpd's event MPM does (server/mpm/event/event.c, process_socket).
 * A connection with input already buffered (a pipelined request, TLS
 * records already read) is served again at once, never parked; one whose
 * input filters clog is served synchronously by http_core.  With
 * AsyncConnections off, every connection is served on its thread from
 * start to end (ap_process_connection, ap_lingering_close), exactly as
 * before.
 * Called from: worker threads (hybrid_worker.c, hybrid_drain.c).
 */

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "apr_portable.h"
#include "apr_strings.h"

#include "httpd.h"
#include "http_config.h"
#include "http_connection.h"
#include "http_core.h"
#include "http_log.h"
#include "http_main.h"
#include "http_vhost.h"
#include "mpm_common.h"
#include "scoreboard.h"
#include "util_filter.h"

#include "hybrid_child.h"
#include "hybrid_config.h"
#include "hybrid_conn.h"
#include "hybrid_linger.h"
#include "hybrid_poller.h"
#include "hybrid_pools.h"
#include "hybrid_server.h"
#include "reuseport_steer.h"

extern module AP_MODULE_DECLARE_DATA mpm_hybrid_module;

#define LINGER_AT_MOST    apr_time_from_sec(30)   /* MAX_SECS_TO_LINGER */

/* Before a connection is parked, its thread waits a moment for what it
 * would be parked for, if another thread of the child watches the epoll
 * set meanwhile: a client busy on its connection (a browser fetching a
 * page's parts, a load test) sends its next request, or its FIN, within a
 * round trip, and then the connection goes on without the epoll set
 * (system calls and a wake-up of another thread saved); an idle one is
 * parked right after.  On a loaded machine that round trip takes a few
 * milliseconds: with 2 ms, keep-alive under wrk -c50 ran at 0.93x of
 * parking off; with 5 ms at 1.06x (10 ms: 1.05x).
 *
 * The grace holds where the child keeps a reserve (hybrid_poller.c) too.
 * Parked at once there, the next request was taken by whichever thread
 * came back first, often without sleeping: 8 keep-alive clients on
 * 2 x 25 threads, 0.7 context switches per request against 1.3, at the
 * same rate, but p99 5.5 ms against 1.8 (wrk -c50 on 8 x 25: 60 against
 * 26 ms).  A thread that runs on from one client to the next without
 * sleeping uses up its share of the CPU and waits behind every other
 * thread, with the requests it would have taken; a thread woken for its
 * own client's request runs soon. */
#define KEEPALIVE_GRACE_MS 5
#define LINGER_GRACE_MS    20

static long conn_id(const hyb_thread *t)
{
    return (long)t->child->slot * hyb_conf.lim.thread_limit + t->num;
}

/* ------------------------------------------------------------------ */
/* AsyncConnections off: the whole connection on this thread.          */

static void serve_synchronously(hyb_thread *t, apr_socket_t *csd,
                                apr_pool_t *pool)
{
    hyb_child *ch = t->child;
    apr_bucket_alloc_t *ba = apr_bucket_alloc_create(pool);
    ap_sb_handle_t *sbh;
    apr_os_sock_t fd;
    conn_rec *c;

    apr_os_sock_get(&fd, csd);
    t->active_fd = fd;
    ap_create_sb_handle(&sbh, pool, ch->slot, t->num);
    c = ap_run_create_connection(pool, ap_server_conf, csd, conn_id(t), sbh,
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
    hyb_poller_conn_gone(ch);
}

/* ------------------------------------------------------------------ */
/* Parking                                                             */

/* The KeepAliveTimeout of the connection's last request's server, as
 * http_core's sync path uses it: the base server's (the first on this
 * address) unless the request's own server set one. */
int hyb_conn_note_request(request_rec *r)
{
    hyb_conn *conn = ap_get_module_config(r->connection->conn_config,
                                          &mpm_hybrid_module);

    if (conn) {
        conn->keepalive_timeout = r->server->keep_alive_timeout_set
            ? r->server->keep_alive_timeout
            : r->connection->base_server->keep_alive_timeout;
    }
    return DECLINED;
}

static apr_interval_time_t keepalive_timeout(hyb_conn *conn)
{
    return conn->keepalive_timeout ? conn->keepalive_timeout
                                   : conn->c->base_server->keep_alive_timeout;
}

static void suspend(hyb_conn *conn)
{
    ap_run_suspend_connection(conn->c, NULL);
    conn->c->sbh = NULL;    /* no thread's scoreboard entry while parked */
}

static void resume(hyb_thread *t, hyb_conn *conn)
{
    conn_rec *c = conn->c;

    ap_update_sb_handle(conn->sbh, t->child->slot, t->num);
    c->sbh = conn->sbh;
    c->id = conn_id(t);     /* the thread number is part of the id */
    c->current_thread = t->thd;
    ap_run_resume_connection(c, NULL);
}

/* A suspended connection is closed on a thread again: resumed first, so
 * that a module that counts suspended connections (the suspend and resume
 * hooks come in pairs) and anything its pool's cleanups touch see this
 * thread. */
static void close_suspended(hyb_thread *t, hyb_conn *conn)
{
    resume(t, conn);
    hyb_poller_close(t, conn);
}

/* Hands the (suspended) connection to the poller; the thread is free
 * afterwards.  If the poller cannot take it, it is closed: a connection
 * must not be left behind where nothing would ever serve it. */
static void park_suspended(hyb_thread *t, hyb_conn *conn, hyb_park_kind kind,
                           int want_write, apr_interval_time_t timeout)
{
    if (hyb_poller_park(conn, kind, want_write, timeout) != APR_SUCCESS) {
        close_suspended(t, conn);
    }
}

static void park(hyb_thread *t, hyb_conn *conn, hyb_park_kind kind,
                 int want_write, apr_interval_time_t timeout)
{
    suspend(conn);
    park_suspended(t, conn, kind, want_write, timeout);
}

/* ------------------------------------------------------------------ */
/* Lingering close                                                     */

/* How long a thread may wait on its own client, `grace` ms at most: not
 * at all when no other thread of the child waits on the epoll set: it must
 * not sit on a quiet connection while parked ones that turned readable
 * wait for a thread.  (Counting idle threads is not enough: one waiting
 * for the accept mutex is idle, but serves nothing meanwhile, and with
 * it counted, busy threads kept their own clients and starved the parked
 * ones for up to a second.) */
static int grace_ms(int grace)
{
    return hyb_poller_watched() ? grace : 0;
}

/* just_shut: called right after the FIN went out.  The client has yet to
 * read the end of the response then, so a read finds nothing in nearly
 * every case (0.93 EAGAIN reads per connection under wrk with
 * Connection: close); the first look is the grace's poll, or the epoll
 * set's, which reports at once what is there already. */
static void wait_for_client_close(hyb_thread *t, hyb_conn *conn,
                                  int just_shut)
{
    apr_time_t now = apr_time_now();
    apr_interval_time_t wait = HYB_LINGER_AFTER_READ;
    /* Where the child keeps a reserve, handed over at once: the client has its
     * response, and a thread held for its FIN left the next connections
     * to threads let out of the reserve (0.16 futex calls per request
     * against 0.02-0.10).  Without a grace, a look right after the read
     * tells nothing new. */
    int grace = hyb_poller_reserved() ? 0 : grace_ms(LINGER_GRACE_MS);

    if ((!just_shut && hyb_linger_drain(conn)) || now >= conn->linger_until
        || (grace && hyb_poller_readable_within(conn->fd, grace)
            && hyb_linger_drain(conn))) {
        hyb_poller_close(t, conn);
        return;
    }
    if (now + wait > conn->linger_until) {
        wait = conn->linger_until - now;
    }
    /* Just after the FIN the client is about to close, and the lingering
     * list looks at it cheaply (hybrid_linger.c); back from the epoll set
     * it is a slow one, and waits there again. */
    suspend(conn);
    if (just_shut && hyb_linger_add(conn, now, now + wait) == 0) {
        return;
    }
    park_suspended(t, conn, HYB_PARK_LINGER, 0, wait);
}

void hyb_conn_lingered(hyb_thread *t, hyb_conn *conn)
{
    close_suspended(t, conn);
}

static void start_lingering_close(hyb_thread *t, hyb_conn *conn)
{
    int shortly = apr_table_get(conn->c->notes, "short-lingering-close")
                  != NULL;

    conn->pub.state = CONN_STATE_LINGER;
    apr_socket_timeout_set(conn->sock, HYB_LINGER_AFTER_READ);
    /* pre_close hooks (TLS close_notify), what the filters still hold,
     * then the FIN */
    if (ap_start_lingering_close(conn->c)) {
        hyb_poller_close(t, conn);
        return;
    }
    apr_socket_timeout_set(conn->sock, 0);
    apr_socket_opt_set(conn->sock, APR_INCOMPLETE_READ, 0);
    conn->pub.state = shortly ? CONN_STATE_LINGER_SHORT
                              : CONN_STATE_LINGER_NORMAL;
    conn->linger_until = apr_time_now()
                         + (shortly ? HYB_LINGER_AFTER_READ : LINGER_AT_MOST);
    wait_for_client_close(t, conn, 1);
}

/* ------------------------------------------------------------------ */
/* The state machine                                                    */

/* What http_core's process_connection left, made one of the states the
 * MPM acts on (anything unexpected closes the connection). */
static void process(hyb_conn *conn)
{
    conn_rec *c = conn->c;
    int rc;

    conn->pub.state = CONN_STATE_PROCESSING;
    rc = ap_run_process_connection(c);
    if (rc == DONE) {
        rc = OK;
    }
    if (rc == OK && conn->pub.state == CONN_STATE_PROCESSING) {
        conn->pub.state = CONN_STATE_LINGER;
    }
    else if (rc == OK && conn->pub.state == CONN_STATE_KEEPALIVE) {
        conn->pub.state = CONN_STATE_WRITE_COMPLETION;
    }
    if (rc != OK || c->aborted
        || (conn->pub.state != CONN_STATE_LINGER
            && conn->pub.state != CONN_STATE_WRITE_COMPLETION
            && conn->pub.state != CONN_STATE_SUSPENDED)) {
        if (rc != OK || conn->pub.state != CONN_STATE_LINGER) {
            ap_log_cerror(APLOG_MARK, APLOG_DEBUG, 0, c, HYBLOGNO(00110)
                          "connection processing returned %d (state %d): "
                          "closing", rc, (int)conn->pub.state);
        }
        conn->pub.state = CONN_STATE_LINGER;
    }
}

/* Flushes the core output filter without blocking.  Returns 1 if all is
 * written, 0 if the connection must wait to write more, -1 on error. */
static int flush_output(hyb_conn *conn)
{
    conn_rec *c = conn->c;
    ap_filter_t *last = c->output_filters;

    while (last->next) {
        last = last->next;
    }
    if (last->frec->filter_func.out_func(last, NULL) != APR_SUCCESS) {
        return -1;
    }
    return !c->data_in_output_filters;
}

/* Write completion: what comes after a response. */
static hyb_park_kind after_response(hyb_thread *t, hyb_conn *conn)
{
    conn_rec *c = conn->c;
    int flushed;

    ap_update_child_status(conn->sbh, SERVER_BUSY_WRITE, NULL);
    flushed = flush_output(conn);
    if (flushed < 0) {
        conn->pub.state = CONN_STATE_LINGER;
        return HYB_PARK_NONE;
    }
    if (!flushed || conn->pub.sense == CONN_SENSE_WANT_READ) {
        return HYB_PARK_WRITE;     /* a slow reader, or a module (h2)
                                      that waits for input with Timeout */
    }
    /* A stopping child still parks a connection its response promised to
     * keep open: the client may be sending its next request already,
     * which is answered (with Connection: close) rather than lost; the
     * poller closes it once it has been idle a moment. */
    if (c->keepalive != AP_CONN_KEEPALIVE || c->aborted) {
        conn->pub.state = CONN_STATE_LINGER;
    }
    else if (c->data_in_input_filters) {
        conn->pub.state = CONN_STATE_PROCESSING;   /* pipelined */
    }
    else {
        conn->pub.state = CONN_STATE_KEEPALIVE;
        return HYB_PARK_KEEPALIVE;
    }
    return HYB_PARK_NONE;
}

static void run(hyb_thread *t, hyb_conn *conn)
{
    hyb_park_kind kind;

    t->active_fd = conn->fd;
    for (;;) {
        if (conn->pub.state == CONN_STATE_PROCESSING
            || conn->c->clogging_input_filters) {
            process(conn);
        }
        if (conn->pub.state == CONN_STATE_SUSPENDED) {
            break;                 /* a module's now; it resumes it */
        }
        if (conn->pub.state == CONN_STATE_WRITE_COMPLETION) {
            kind = after_response(t, conn);
            hyb_poller_served(t);
            if (kind == HYB_PARK_WRITE) {
                int want_write = conn->pub.sense != CONN_SENSE_WANT_READ;

                conn->pub.sense = CONN_SENSE_DEFAULT;
                park(t, conn, kind, want_write,
                     conn->c->base_server->timeout);
                break;
            }
            if (kind == HYB_PARK_KEEPALIVE) {
                ap_update_child_status(conn->sbh, SERVER_BUSY_KEEPALIVE,
                                       NULL);
                if (hyb_poller_readable_within(conn->fd,
                                      grace_ms(KEEPALIVE_GRACE_MS))) {
                    hyb_poller_resumed(t);
                    conn->pub.state = CONN_STATE_PROCESSING;
                    continue;
                }
                park(t, conn, kind, 0, keepalive_timeout(conn));
                break;
            }
            if (conn->pub.state == CONN_STATE_PROCESSING) {
                continue;
            }
        }
        start_lingering_close(t, conn);
        break;
    }
    t->active_fd = -1;
}

/* A connection's state lives in its own pool, so it can wait in the
 * poller and resume on any thread. */
static hyb_conn *new_conn(hyb_child *ch, apr_socket_t *csd,
                          apr_pool_t *pool)
{
    hyb_conn *conn = apr_pcalloc(pool, sizeof(*conn));
    apr_os_sock_t fd;

    apr_os_sock_get(&fd, csd);
    conn->fd = fd;
    conn->sock = csd;
    conn->pool = pool;
    conn->child = ch;
    conn->park.index = -1;
    return conn;
}

/* The conn_rec, made on the thread that serves it first. */
static int make_conn_rec(hyb_thread *t, hyb_conn *conn)
{
    apr_bucket_alloc_t *ba = apr_bucket_alloc_create(conn->pool);

    ap_create_sb_handle(&conn->sbh, conn->pool, t->child->slot, t->num);
    conn->c = ap_run_create_connection(conn->pool, ap_server_conf,
                                       conn->sock, conn_id(t), conn->sbh, ba);
    if (!conn->c) {
        return 0;
    }
    conn->c->cs = &conn->pub;
    conn->c->current_thread = t->thd;
    ap_set_module_config(conn->c->conn_config, &mpm_hybrid_module, conn);
    return 1;
}

static void begin(hyb_thread *t, hyb_conn *conn)
{
    int rc;

    if (!make_conn_rec(t, conn)) {
        hyb_poller_close(t, conn);
        return;
    }
    ap_update_vhost_given_ip(conn->c);
    rc = ap_pre_connection(conn->c, conn->sock);
    if (rc != OK && rc != DONE) {
        ap_log_cerror(APLOG_MARK, APLOG_DEBUG, 0, conn->c, HYBLOGNO(00111)
                      "connection aborted by a pre_connection hook");
        hyb_poller_close(t, conn);
        return;
    }
    conn->pub.state = CONN_STATE_PROCESSING;
    conn->pub.sense = CONN_SENSE_DEFAULT;
    run(t, conn);
}

void hyb_conn_start(hyb_thread *t, apr_socket_t *csd, apr_pool_t *pool)
{
    if (!hyb_conf.async) {
        serve_synchronously(t, csd, pool);
        hyb_pool_recycle(t, pool);
        return;
    }
    begin(t, new_conn(t->child, csd, pool));
}

void hyb_conn_resume(hyb_thread *t, hyb_conn *conn)
{
    hyb_park_kind was = conn->park.kind;

    conn->park.kind = HYB_PARK_NONE;
    resume(t, conn);
    if (conn->park.expired) {
        /* KeepAliveTimeout, Timeout or the lingering close ran out */
        if (was == HYB_PARK_KEEPALIVE) {
            apr_table_setn(conn->c->notes, "short-lingering-close", "1");
            t->active_fd = conn->fd;
            start_lingering_close(t, conn);
            t->active_fd = -1;
        }
        else {
            hyb_poller_close(t, conn);
        }
        return;
    }
    switch (was) {
    case HYB_PARK_KEEPALIVE:
        conn->pub.state = CONN_STATE_PROCESSING;
        break;
    case HYB_PARK_WRITE:
        conn->pub.state = CONN_STATE_WRITE_COMPLETION;
        break;
    case HYB_PARK_LINGER:
        wait_for_client_close(t, conn, 0);
        return;
    default:
        break;
    }
    run(t, conn);
}

/* ------------------------------------------------------------------ */
/* HTTP/2 secondary connections share their master's socket and get a
 * state of their own (as event's setup_slave_conn does). */

void hyb_conn_setup_secondary(conn_rec *c)
{
    conn_state_t *cs;

    if (!c->master || (c->cs && c->cs != c->master->cs)) {
        return;
    }
    cs = apr_pcalloc(c->pool, sizeof(*cs));
    cs->state = CONN_STATE_PROCESSING;
    cs->sense = CONN_SENSE_DEFAULT;
    c->cs = cs;
}
