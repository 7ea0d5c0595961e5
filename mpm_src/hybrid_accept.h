/* hybrid_accept.h: the accept-strategy interface.
 *
 * A strategy is one way for children to take new connections; each lives
 * in its own accept_*.c and exports only its descriptor.  It knows this
 * interface, the child's public face (hybrid_child.h) and the services
 * below and in hybrid_poller.h (the child's one wait, which it hands its
 * listeners to), nothing of the parent.
 *
 * Operations, in call order.  Required:
 *   open        parent, open_logs of every generation, before any fork:
 *               create what children share (lock, sockets); log why on
 *               failure
 *   child_init  child main thread after fork, before the privilege drop:
 *               attach to what open made, hold the listeners this child
 *               serves (hyb_drain_hold) and give them to the child's wait
 *               (hyb_poller_listen), saying how: EPOLLEXCLUSIVE, plain, or
 *               gated behind the strategy's lock
 * Optional (NULL when the strategy has nothing to do there):
 *   gate_enter  gated strategies: the accept turn's holder takes the lock
 *               before it polls the listeners; waits at most `slice`.
 *               APR_SUCCESS (held), APR_TIMEUP, or anything else when the
 *               child is stopping
 *   gate_leave  gives the lock back
 *   probe       parent, check_config: NULL if usable here, else why not
 *   configure   parent, check_config: set core options the strategy
 *               depends on before listeners are opened
 *   groups      how many listener groups children are spread over
 *               (1 when absent)
 *   mutex_name  the lock mechanism in use, for logs and status
 *   child_exit  child main thread after all workers are done
 *   reaped      parent, after a current child died from a signal: repair
 *               what it may have left locked
 *   stopping    parent, the server is stopping: close what open keeps
 *               across generations, so new connections are refused
 */
#ifndef HYBRID_ACCEPT_H
#define HYBRID_ACCEPT_H

#include "apr_network_io.h"
#include "httpd.h"
#include "http_config.h"
#include "ap_listen.h"

#include "mod_mpm_hybrid.h"
#include "hybrid_types.h"

typedef enum {
    HYB_ACCEPT_OK,        /* *csd holds a new connection */
    HYB_ACCEPT_RETRY,     /* nothing this time; loop */
    HYB_ACCEPT_STOP,      /* the child is stopping */
    HYB_ACCEPT_SHORTAGE   /* out of fds or memory: stop accepting a while */
} hyb_accept_rc;

struct hyb_strategy {
    const char *name;
    hybrid_accept_id_e id;
    apr_status_t (*open)(apr_pool_t *pconf, server_rec *s);
    apr_status_t (*child_init)(hyb_child *ch);
    apr_status_t (*gate_enter)(hyb_child *ch, apr_interval_time_t slice);
    void (*gate_leave)(hyb_child *ch);
    const char *(*probe)(apr_pool_t *p);
    const char *(*configure)(cmd_parms *cmd);
    int (*groups)(void);
    const char *(*mutex_name)(void);
    void (*child_exit)(hyb_child *ch);
    void (*reaped)(pid_t pid);
    void (*stopping)(void);
};

extern const hyb_strategy hyb_accept_mutex;
extern const hyb_strategy hyb_accept_preemptive;
extern const hyb_strategy hyb_accept_reuseport;
extern const hyb_strategy hyb_accept_exclusive;

/* The registry. */
const hyb_strategy *hyb_strategy_find(const char *name);
const char *hyb_strategy_names(apr_pool_t *p);

/* Listener groups of the strategy in force (1 unless reuseport). */
int hyb_accept_groups(void);

/* Can a child block in accept() on its listener, as prefork's children
 * do on a single listener?  Only where nothing else needs its one thread
 * meanwhile and the kernel's wake-up is the whole strategy: ThreadsPerChild
 * 1, AsyncConnections Off, one Listen, and exclusive or reuseport (whose
 * children wait on the listener itself; accept() wakes one waiter, the one
 * that has waited longest).  One system call per connection instead of a
 * wait and an accept.  A stop signal interrupts it (no SA_RESTART), and
 * the handler lets go of the listener first (hybrid_drain.c), so a signal
 * that lands just before the call cannot leave it blocked. */
int hyb_accept_blocks(void);

/* Parent, open: listeners are shared open file descriptions, so the mode
 * set here is seen by every process.  Non-blocking, since every strategy
 * waits before it accepts and a connection another process took first
 * must give EAGAIN; blocking where hyb_accept_blocks(). */
void hyb_listeners_prepare(ap_listen_rec *lrs);

/* Worker: accept() on a listener the wait said was readable (`woken`),
 * or blocking, with errno sorted: EAGAIN after a wake-up is one another
 * waiter won (counted), a resource
 * shortage is said as such (the caller pauses), a client's failed
 * handshake is a RETRY. */
hyb_accept_rc hyb_accept_on(hyb_child *ch, ap_listen_rec *lr,
                            apr_socket_t **csd, apr_pool_t *ptrans,
                            int woken);

#endif /* HYBRID_ACCEPT_H */
