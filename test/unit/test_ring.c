/* test_ring.c: the per-second request ring (mod_src/cstatus_ring.c):
 * bumps land in their second, the trailing window sums whole seconds and
 * the covered part of the oldest, stale buckets count nothing, and
 * threads bumping at once lose no count. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "cstatus_ring.h"
#include "cstatus_ring.c"
#include "unit_check.h"

#define NEAR(a, b) (fabs((a) - (b)) < 1e-9)
#define T0 apr_time_from_sec(1700000000)
/* second s after T0, plus `frac` of a second */
#define AT(s, frac) (T0 + apr_time_from_sec(s) \
                     + (apr_time_t)((frac) * APR_USEC_PER_SEC))

static volatile apr_uint64_t ring[CSTATUS_RING];

static void bump_n(apr_time_t when, int n)
{
    while (n-- > 0) {
        cstatus_ring_bump(ring, when);
    }
}

static double window(apr_time_t now, int secs)
{
    return cstatus_ring_window((const apr_uint64_t *)ring, now, secs);
}

static void reset(void)
{
    memset((void *)ring, 0, sizeof(ring));
}

/* 10 per second for 20 s: a 10 s window holds 100 at a whole second and
 * 100 in between (9.5 whole seconds' worth plus half of the oldest). */
static void test_steady_rate(void)
{
    int s;

    reset();
    for (s = 0; s < 20; s++) {
        bump_n(AT(s, 0.2), 10);
    }
    CHECK(NEAR(window(AT(19, 0.9), 10), 10 * 10 + 10 * 0.1));
    CHECK(NEAR(window(AT(20, 0.0), 10), 100.0));
    CHECK(NEAR(window(AT(19, 0.5), 1), 10 + 10 * 0.5));
    CHECK(NEAR(window(AT(19, 0.5), 60), 200.0));
}

/* The oldest second counts by the part of it inside the window. */
static void test_oldest_second_pro_rata(void)
{
    reset();
    bump_n(AT(0, 0.5), 8);
    /* window (10.25 - 10, 10.25] = (0.25, 10.25]: 3/4 of second 0 */
    CHECK(NEAR(window(AT(10, 0.25), 10), 6.0));
    CHECK(NEAR(window(AT(10, 0.75), 10), 2.0));
    CHECK(NEAR(window(AT(11, 0.0), 10), 0.0));
}

/* A bucket last written 64 s ago is reused, not added to. */
static void test_stale_buckets(void)
{
    reset();
    bump_n(AT(0, 0.1), 5);
    bump_n(AT(CSTATUS_RING, 0.1), 3);        /* same bucket, new second */
    CHECK(NEAR(window(AT(CSTATUS_RING, 0.5), 10), 3.0));
    /* read long after: everything is stale */
    CHECK(NEAR(window(AT(CSTATUS_RING + 200, 0.5), 60), 0.0));
}

/* Second by second, newest first, the oldest weighted; they sum to the
 * window. */
static void test_seconds(void)
{
    double out[11];
    int k;

    reset();
    for (k = 0; k < 20; k++) {
        bump_n(AT(k, 0.5), k + 1);          /* second k: k + 1 requests */
    }
    cstatus_ring_seconds((const apr_uint64_t *)ring, AT(19, 0.75), 10, out);
    for (k = 0; k < 10; k++) {
        CHECK(NEAR(out[k], 20 - k));
    }
    CHECK(NEAR(out[10], 10 * 0.25));        /* second 9, its last quarter */
    CHECK(NEAR(out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6]
               + out[7] + out[8] + out[9] + out[10],
               window(AT(19, 0.75), 10)));
    cstatus_ring_seconds((const apr_uint64_t *)ring, AT(40, 0.5), 10, out);
    CHECK(out[0] == 0.0 && out[10] == 0.0);
}

static void test_bad_windows(void)
{
    reset();
    bump_n(AT(5, 0.0), 4);
    CHECK(window(AT(5, 0.5), 0) == 0.0);
    CHECK(window(AT(5, 0.5), CSTATUS_RING) == 0.0);
    CHECK(window(AT(5, 0.5), -3) == 0.0);
    CHECK(NEAR(window(AT(5, 0.5), CSTATUS_RING - 1), 4.0));
}

static void *bumper(void *arg)
{
    bump_n(AT(30, 0.5), 100000);
    return arg;
}

static void test_concurrent_bumps(void)
{
    pthread_t t[4];
    int i;

    reset();
    for (i = 0; i < 4; i++) {
        pthread_create(&t[i], NULL, bumper, NULL);
    }
    for (i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
    }
    CHECK(NEAR(window(AT(30, 0.9), 1), 400000.0));
}

int main(void)
{
    test_steady_rate();
    test_oldest_second_pro_rata();
    test_stale_buckets();
    test_seconds();
    test_bad_windows();
    test_concurrent_bumps();
    return unit_report("test_ring");
}
