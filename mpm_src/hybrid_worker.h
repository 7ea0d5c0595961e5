/* hybrid_worker.h: a worker thread (or a prefork-style child's only
 * thread): take a connection, serve it, repeat until told to stop. */
#ifndef HYBRID_WORKER_H
#define HYBRID_WORKER_H

#include "apr_network_io.h"
#include "apr_pools.h"
#include "apr_thread_proc.h"

#include "hybrid_types.h"

/* The loop; returns when the child stops or the thread gives up. */
void hyb_worker_run(hyb_thread *t);

/* ap_thread_create's entry point for hyb_worker_run. */
void *APR_THREAD_FUNC hyb_worker_thread(apr_thread_t *thd, void *data);

/* Serves one accepted connection on this thread, which counts as busy
 * meanwhile (the pool goes with the connection). */
void hyb_worker_serve(hyb_thread *t, apr_socket_t *csd, apr_pool_t *ptrans);

#endif /* HYBRID_WORKER_H */
