/* hybrid_conn.h: the connection path.  One client connection, from accept
 * to close: served on a thread, and between requests (or while its
 * lingering close waits for the client) parked in its child's poller,
 * holding no thread (AsyncConnections on); or served from start to end on
 * one thread (AsyncConnections off, and connections whose input filters
 * clog). */
#ifndef HYBRID_CONN_H
#define HYBRID_CONN_H

#include "apr_network_io.h"
#include "apr_pools.h"
#include "httpd.h"
#include "scoreboard.h"

#include "hybrid_types.h"

/* Why a connection is parked, and so what ends the wait. */
typedef enum {
    HYB_PARK_NONE = 0,
    HYB_PARK_KEEPALIVE,       /* waits for its next request (KeepAliveTimeout) */
    HYB_PARK_WRITE,           /* waits to write (or read) more (Timeout) */
    HYB_PARK_LINGER,          /* waits for the client's close (2 s / 30 s) */
    HYB_PARK_KINDS
} hyb_park_kind;

/* The poller's part of a connection (hybrid_poller.c owns it; its
 * deadlines order it by expiry, hybrid_deadlines.c). */
typedef struct hyb_park {
    hyb_park_kind kind;
    apr_time_t since;         /* parked at */
    apr_time_t expiry;
    int index;                /* in the deadlines, -1 when not parked */
    int registered;           /* known to the epoll set (MOD, not ADD) */
    volatile int expired;     /* its wait ran out; the owner closes it */
} hyb_park;

typedef struct hyb_conn {
    conn_state_t pub;         /* c->cs: http_core reports the state here */
    conn_rec *c;
    apr_socket_t *sock;
    int fd;
    apr_pool_t *pool;         /* the connection's transaction pool */
    ap_sb_handle_t *sbh;
    hyb_child *child;
    hyb_park park;
    apr_interval_time_t keepalive_timeout; /* of the last request's server */
    apr_time_t linger_until;  /* lingering close: the last moment */
} hyb_conn;

/* A worker thread: serve a connection it accepted.  With parking the
 * connection may end up in the poller; either way the thread is free
 * when this returns, and `pool` belongs to the connection. */
void hyb_conn_start(hyb_thread *t, apr_socket_t *csd, apr_pool_t *pool);

/* A worker thread: a parked connection the poller handed it (ready, or
 * its wait ran out). */
void hyb_conn_resume(hyb_thread *t, hyb_conn *conn);

/* A worker thread: a lingering close that waited off the epoll set
 * (hybrid_linger.c) is over; the connection is closed. */
void hyb_conn_lingered(hyb_thread *t, hyb_conn *conn);

/* post_read_request hook: the request's server decides the keep-alive
 * wait that follows it (as http_core's sync path would). */
int hyb_conn_note_request(request_rec *r);

/* pre_connection hook (REALLY_FIRST): an HTTP/2 secondary connection gets
 * a state of its own instead of sharing its master's. */
void hyb_conn_setup_secondary(conn_rec *c);

#endif /* HYBRID_CONN_H */
