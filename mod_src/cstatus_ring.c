/* cstatus_ring.c: bumping and summing the per-second ring.
 *
 * Owns: the arithmetic of seconds and buckets.  Called from:
 * cstatus_record.c (bump, in the child that counts) and the collector
 * (window sums).  Pure (APR types only).
 */
#include "cstatus_ring.h"

void cstatus_ring_bump(volatile apr_uint64_t *ring, apr_time_t now)
{
    apr_uint32_t sec = (apr_uint32_t)apr_time_sec(now);
    volatile apr_uint64_t *b = &ring[sec % CSTATUS_RING];
    apr_uint64_t old = __atomic_load_n(b, __ATOMIC_RELAXED);
    apr_uint64_t want;

    do {
        if ((apr_uint32_t)(old >> 32) == sec) {
            want = old + 1;
        }
        else {
            want = ((apr_uint64_t)sec << 32) | 1;
        }
    } while (!__atomic_compare_exchange_n(b, &old, want, 1, __ATOMIC_RELAXED,
                                          __ATOMIC_RELAXED));
}

void cstatus_ring_seconds(const apr_uint64_t *ring, apr_time_t now, int secs,
                          double *out)
{
    apr_uint32_t sec_now = (apr_uint32_t)apr_time_sec(now);
    double frac = (double)(now % APR_USEC_PER_SEC) / APR_USEC_PER_SEC;
    int k;

    if (secs < 1 || secs >= CSTATUS_RING) {
        for (k = 0; secs >= 0 && k <= secs; k++) {
            out[k] = 0.0;
        }
        return;
    }
    /* Seconds sec_now-secs+1 .. sec_now lie wholly in the window (the
     * current one up to now); of second sec_now-secs only its last
     * (1 - frac) does. */
    for (k = 0; k <= secs; k++) {
        apr_uint32_t want = sec_now - (apr_uint32_t)k;
        apr_uint64_t v = ring[want % CSTATUS_RING];
        double count = (apr_uint32_t)(v >> 32) == want
                       ? (double)(v & 0xffffffffu) : 0.0;

        out[k] = (k == secs) ? count * (1.0 - frac) : count;
    }
}

double cstatus_ring_window(const apr_uint64_t *ring, apr_time_t now,
                           int secs)
{
    double seconds[CSTATUS_RING], sum = 0.0;
    int k;

    if (secs < 1 || secs >= CSTATUS_RING) {
        return 0.0;
    }
    cstatus_ring_seconds(ring, now, secs, seconds);
    for (k = 0; k <= secs; k++) {
        sum += seconds[k];
    }
    return sum;
}
