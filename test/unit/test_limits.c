/* test_limits.c: how the sizing directives constrain each other
 * (mpm_src/hybrid_limits.c), driven directly: the defaults that depend on
 * ThreadsPerChild, each clamp and the warning it gives, and the limits a
 * restart may not change. */
#include <stdio.h>
#include <string.h>

#include "hybrid_limits.h"
#include "hybrid_limits.c"
#include "unit_check.h"

static char warnings[8][512];
static int nwarnings;

static void collect(void *ctx, const char *msg)
{
    (void)ctx;
    if (nwarnings < 8) {
        snprintf(warnings[nwarnings], sizeof(warnings[0]), "%s", msg);
    }
    nwarnings++;
}

static int warned(const char *needle)
{
    int i;

    for (i = 0; i < nwarnings && i < 8; i++) {
        if (strstr(warnings[i], needle)) {
            return 1;
        }
    }
    return 0;
}

static hyb_limits with_tpc(int tpc)
{
    hyb_limits l;

    memset(&l, 0, sizeof(l));
    l.threads_per_child = tpc;
    return l;
}

static void clamp(hyb_limits *l)
{
    nwarnings = 0;
    hyb_limits_clamp(l, 20000, collect, NULL);
}

static void test_threaded_defaults(void)
{
    hyb_limits l = with_tpc(25);

    clamp(&l);
    CHECK(l.server_limit == 16);
    CHECK(l.thread_limit == 64);
    CHECK(l.max_workers == 150);
    CHECK(l.daemons_limit == 6);
    CHECK(l.start_servers == 3);
    CHECK(l.spare_min == 75);
    CHECK(l.spare_max == 250);
    CHECK(nwarnings == 0);
}

/* ThreadsPerChild 1 is prefork's shape: 256 slots, 5/10 idle children. */
static void test_prefork_defaults(void)
{
    hyb_limits l = with_tpc(1);

    clamp(&l);
    CHECK(l.server_limit == 256);
    CHECK(l.thread_limit == 1);
    CHECK(l.max_workers == 150);
    CHECK(l.daemons_limit == 150);
    CHECK(l.start_servers == 5);
    CHECK(l.spare_min == 5);
    CHECK(l.spare_max == 10);
    CHECK(nwarnings == 0);
}

static void test_thread_limit_follows_large_tpc(void)
{
    hyb_limits l = with_tpc(100);

    clamp(&l);
    CHECK(l.thread_limit == 100);
    CHECK(l.max_workers == 100);     /* 150 rounded down to a multiple */
}

static void test_server_limit_cap(void)
{
    hyb_limits l = with_tpc(25);

    l.server_limit = 30000;
    l.set_server_limit = 1;
    clamp(&l);
    CHECK(l.server_limit == 20000);
    CHECK(warned("exceeds the compile-time limit of 20000"));
}

static void test_restart_keeps_first_limits(void)
{
    hyb_limits l = with_tpc(25);

    l.server_limit = 32;
    l.set_server_limit = 1;
    l.thread_limit = 128;
    l.set_thread_limit = 1;
    l.first_server_limit = 16;
    l.first_thread_limit = 64;
    clamp(&l);
    CHECK(l.server_limit == 16);
    CHECK(l.thread_limit == 64);
    CHECK(warned("changing ServerLimit to 32 from original value of 16"));
    CHECK(warned("changing ThreadLimit to 128 from original value of 64"));
}

/* The case an operator meets switching 25 -> 1 with a restart: the first
 * start's 16 slots stay, so at most 16 prefork-style children. */
static void test_tpc_one_after_threaded_start(void)
{
    hyb_limits l = with_tpc(1);

    l.first_server_limit = 16;
    l.first_thread_limit = 64;
    clamp(&l);
    CHECK(l.server_limit == 16);
    CHECK(l.daemons_limit == 16);
    CHECK(warned("ServerLimit to 256 from original value of 16"));
}

static void test_tpc_above_thread_limit(void)
{
    hyb_limits l = with_tpc(80);

    l.thread_limit = 64;
    l.set_thread_limit = 1;
    clamp(&l);
    CHECK(l.threads_per_child == 64);
    CHECK(warned("ThreadsPerChild of 80 exceeds ThreadLimit of 64"));
}

static void test_max_workers_rounding(void)
{
    hyb_limits l = with_tpc(25);

    l.max_workers = 160;
    l.set_max_workers = 1;
    clamp(&l);
    CHECK(l.max_workers == 150);
    CHECK(l.daemons_limit == 6);
    CHECK(warned("not an integer multiple"));

    l = with_tpc(25);
    l.max_workers = 10;
    l.set_max_workers = 1;
    clamp(&l);
    CHECK(l.max_workers == 25);
    CHECK(warned("less than ThreadsPerChild"));

    l = with_tpc(25);
    l.max_workers = 1000;
    l.set_max_workers = 1;
    clamp(&l);
    CHECK(l.max_workers == 400);          /* 16 slots x 25 */
    CHECK(warned("would require 40 servers"));
}

static void test_start_servers_clamped(void)
{
    hyb_limits l = with_tpc(25);

    l.start_servers = 10;
    l.set_start = 1;
    clamp(&l);
    CHECK(l.start_servers == 6);
    CHECK(warned("StartServers of 10 exceeds"));

    /* an unset StartServers is clamped silently */
    l = with_tpc(25);
    l.max_workers = 50;
    l.set_max_workers = 1;
    clamp(&l);
    CHECK(l.start_servers == 2);
    CHECK(nwarnings == 0);
}

static void test_spare_servers_at_tpc_one(void)
{
    hyb_limits l = with_tpc(1);

    l.min_spare_servers = 3;
    l.max_spare_servers = 7;
    l.set_spare_servers = 1;
    clamp(&l);
    CHECK(l.spare_min == 3);
    CHECK(l.spare_max == 7);
    CHECK(nwarnings == 0);
}

static void test_spare_servers_ignored_when_threaded(void)
{
    hyb_limits l = with_tpc(25);

    l.min_spare_servers = 3;
    l.set_spare_servers = 1;
    clamp(&l);
    CHECK(l.spare_min == 75);
    CHECK(warned("only apply with ThreadsPerChild 1"));
}

/* Retiring a child must not fall below the minimum. */
static void test_spare_max_above_min_plus_tpc(void)
{
    hyb_limits l = with_tpc(25);

    l.min_spare_threads = 50;
    l.set_min_spare_threads = 1;
    l.max_spare_threads = 60;
    l.set_max_spare_threads = 1;
    clamp(&l);
    CHECK(l.spare_max == 75);
    CHECK(warned("MaxSpareThreads of 60 is less than MinSpareThreads"));

    l = with_tpc(1);
    l.min_spare_servers = 5;
    l.max_spare_servers = 5;
    l.set_spare_servers = 1;
    clamp(&l);
    CHECK(l.spare_max == 6);
    CHECK(warned("MaxSpareServers of 5 is less than MinSpareServers"));
}

static void test_spare_min_at_most_max_workers(void)
{
    hyb_limits l = with_tpc(25);

    l.max_workers = 50;
    l.set_max_workers = 1;
    l.min_spare_threads = 500;
    l.set_min_spare_threads = 1;
    clamp(&l);
    CHECK(l.spare_min == 50);
    CHECK(l.spare_max >= l.spare_min + 25);
}

int main(void)
{
    test_threaded_defaults();
    test_prefork_defaults();
    test_thread_limit_follows_large_tpc();
    test_server_limit_cap();
    test_restart_keeps_first_limits();
    test_tpc_one_after_threaded_start();
    test_tpc_above_thread_limit();
    test_max_workers_rounding();
    test_start_servers_clamped();
    test_spare_servers_at_tpc_one();
    test_spare_servers_ignored_when_threaded();
    test_spare_max_above_min_plus_tpc();
    test_spare_min_at_most_max_workers();
    return unit_report("test_limits");
}
