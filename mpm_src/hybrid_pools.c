/* hybrid_pools.c: transaction pools (hybrid_pools.h).
 *
 * A pool comes from the allocator of the thread that made it, capped by
 * MaxMemFree: what a request frees goes back there, where the thread's
 * next connections reuse it, so a busy connection needs no fresh memory
 * per request and an idle (parked) one keeps only what it uses.  A parked
 * connection may resume on another thread, so the allocator has a mutex;
 * it is contended only in that moment.
 *
 * Each thread keeps one cleared pool for its next connection.  A thread
 * whose connections ended elsewhere gets one from the child's list of
 * cleared pools; that list is bounded, so a child that once held
 * thousands of connections does not keep thousands of pools. */

#include <pthread.h>

#include "apr_allocator.h"
#include "apr_thread_mutex.h"

#include "httpd.h"
#include "mpm_common.h"

#include "hybrid_child.h"
#include "hybrid_pools.h"

#define KEPT_AT_MOST 64

static pthread_mutex_t kept_lock = PTHREAD_MUTEX_INITIALIZER;
static apr_pool_t *kept[KEPT_AT_MOST];
static int nkept;

static apr_allocator_t *thread_allocator(hyb_thread *t)
{
    apr_thread_mutex_t *mutex;

    if (!t->allocator) {
        apr_allocator_create(&t->allocator);
        apr_allocator_max_free_set(t->allocator, ap_max_mem_free);
        apr_thread_mutex_create(&mutex, APR_THREAD_MUTEX_DEFAULT,
                                t->child->pool);
        apr_allocator_mutex_set(t->allocator, mutex);
    }
    return t->allocator;
}

apr_pool_t *hyb_pool_new(hyb_thread *t)
{
    apr_pool_t *pool;

    apr_pool_create_ex(&pool, t->child->pool, NULL, thread_allocator(t));
    apr_pool_tag(pool, "transaction");
    return pool;
}

apr_pool_t *hyb_pool_take(hyb_thread *t)
{
    apr_pool_t *pool = t->ptrans;

    if (pool) {
        t->ptrans = NULL;
        return pool;
    }
    pthread_mutex_lock(&kept_lock);
    if (nkept) {
        pool = kept[--nkept];
    }
    pthread_mutex_unlock(&kept_lock);
    return pool ? pool : hyb_pool_new(t);
}

void hyb_pool_recycle(hyb_thread *t, apr_pool_t *pool)
{
    apr_pool_clear(pool);
    if (!t->ptrans) {
        t->ptrans = pool;
        return;
    }
    pthread_mutex_lock(&kept_lock);
    if (nkept < KEPT_AT_MOST) {
        kept[nkept++] = pool;
        pool = NULL;
    }
    pthread_mutex_unlock(&kept_lock);
    if (pool) {
        apr_pool_destroy(pool);
    }
}
