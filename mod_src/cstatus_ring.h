/* cstatus_ring.h: per-second request counts in a ring of 64 words.
 *
 * Owns: the bucket format and the two operations on it, bumping the
 * current second (writers, lock-free) and summing a trailing window
 * (readers).  Pure: APR types only, no httpd, unit-tested in
 * test/unit/test_ring.c.  The ring itself lives in a record
 * (cstatus_record.h).
 */
#ifndef CSTATUS_RING_H
#define CSTATUS_RING_H

#include "apr.h"
#include "apr_time.h"

/* Enough for a 60 s window plus the partly elapsed oldest second and
 * slack for a slow reader. */
#define CSTATUS_RING 64

/* Count one event at `now`.  Each word packs {second stamp:32, count:32}
 * so a bucket is reset and bumped by one compare-and-swap; any number of
 * threads may bump the same ring. */
void cstatus_ring_bump(volatile apr_uint64_t *ring, apr_time_t now);

/* Events in the `secs` seconds ending at `now` (1 <= secs < CSTATUS_RING,
 * else 0), the oldest, partly covered second weighted by the part of it
 * inside the window.  Buckets stamped with another second (stale, or
 * not yet written) count nothing. */
double cstatus_ring_window(const apr_uint64_t *ring, apr_time_t now,
                           int secs);

/* The same window second by second, newest first: out[0] is the current
 * second up to `now`, out[secs] the oldest, weighted as above; out has
 * secs + 1 entries (all 0 if secs is out of range). */
void cstatus_ring_seconds(const apr_uint64_t *ring, apr_time_t now, int secs,
                          double *out);

#endif /* CSTATUS_RING_H */
