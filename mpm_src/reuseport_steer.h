/* reuseport_steer.h: sending each new connection to a listener group with
 * a free thread (AcceptStrategy reuseport).  Both ends: the workers count
 * the room of their group, the parent keeps the count honest and paces
 * itself, the kernel runs the program that picks.  (reuseport_steer.c
 * says how.) */
#ifndef REUSEPORT_STEER_H
#define REUSEPORT_STEER_H

#include "apr_network_io.h"
#include "apr_time.h"
#include "httpd.h"

#include "hybrid_types.h"

/* One listening address: its sockets in group order (fds[0] is httpd's
 * own listener), and whether the kernel lists them in that order. */
typedef struct hyb_steer_addr {
    apr_sockaddr_t *addr;
    int *fds;
    int in_order;
} hyb_steer_addr;

/* Parent, reuseport's open of every generation, after the group sockets:
 * attaches a program to every address, or leaves them to the kernel's
 * hash (one group, too many groups, or order unknown), and says which. */
void hyb_steer_open(apr_pool_t *p, server_rec *s, int groups,
                    const hyb_steer_addr *addrs, int naddrs);

/* Parent main loop.  max_sleep: the longest the loop may sleep while
 * steering needs passes (-1: no limit).  due: whether this pass should
 * update (at most every 50 ms).  update: the free threads (idle, or
 * closing their connection, in children not retiring) and the children
 * of each group.  child_killed: a current child died from a signal; its
 * waiting threads still count as room, so correct quickly. */
apr_interval_time_t hyb_steer_max_sleep(void);
int hyb_steer_due(apr_time_t now);
void hyb_steer_update(const int *free_threads, const int *children);
void hyb_steer_child_killed(void);

/* Worker: its thread starts waiting for a connection (or its connection
 * starts closing), took one, or stops without one. */
void hyb_steer_room_wait(hyb_thread *t);
void hyb_steer_room_took(hyb_thread *t);
void hyb_steer_room_leave(hyb_thread *t);

#endif /* REUSEPORT_STEER_H */
