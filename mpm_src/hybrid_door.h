/* hybrid_door.h: where a child's spare threads sleep until they are told
 * to look again, the reserve of the poller (hybrid_poller.c).
 *
 * One futex word and a count of sleepers, nothing else: a thread that is
 * let out costs one wait and one wake, and threads that come and go at
 * once never meet on a lock (a mutex and a condition variable, as before,
 * added a futex call for every such meeting: 0.01-0.02 per request in
 * connection-per-request mode, a fifth of what the reserve cost).
 * Linux only, as the poller is (epoll). */
#ifndef HYBRID_DOOR_H
#define HYBRID_DOOR_H

#include <apr.h>

typedef struct hyb_door {
    volatile apr_uint32_t turn;      /* the futex word: bumped per opening */
    volatile apr_uint32_t sleepers;  /* asleep on it, or about to be */
} hyb_door;

#define HYB_DOOR_INIT { 0, 0 }
#define HYB_DOOR_EVERYONE 0x7fffffff

/* Sleeps until shut(arg) is false.  shut() reads state that whoever
 * changes it follows with hyb_door_open: then no wake-up is lost. */
void hyb_door_wait(hyb_door *d, int (*shut)(void *arg), void *arg);

/* After a change that may let sleepers out: wakes up to `n` of them to
 * look again (HYB_DOOR_EVERYONE for all).  No system call when no thread
 * sleeps. */
void hyb_door_open(hyb_door *d, int n);

#endif /* HYBRID_DOOR_H */
