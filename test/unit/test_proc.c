/* test_proc.c: process start times from /proc (mod_src/cstatus_proc.c):
 * the stat line parser, command names with spaces and parentheses, and
 * this process's own start, which must be in the recent past. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cstatus_proc.h"
#include "cstatus_proc.c"
#include "unit_check.h"

/* Fields 3..21 then starttime (22) = 4242, then the rest. */
#define TAIL " S 1 2 3 0 -1 4194560 10 0 0 0 1 2 0 0 20 0 1 0 4242 1000 50"

static void test_parse(void)
{
    unsigned long long ticks = 0;

    CHECK(cstatus_proc_parse_start("123 (apache2)" TAIL "\n", &ticks));
    CHECK(ticks == 4242);
    ticks = 0;
    /* a command name that looks like more fields */
    CHECK(cstatus_proc_parse_start("9 (a) b (c) 1 2)" TAIL, &ticks));
    CHECK(ticks == 4242);
    CHECK(!cstatus_proc_parse_start("123 apache2 S 1 2", &ticks));
    CHECK(!cstatus_proc_parse_start("123 (apache2) S 1 2 3", &ticks));
    CHECK(!cstatus_proc_parse_start("", &ticks));
    CHECK(!cstatus_proc_parse_start("1 (x) S 1 2 3 0 -1 4 1 0 0 0 1 2 0 0 "
                                    "20 0 1 0 notanumber 5", &ticks));
}

static void test_own_start(void)
{
    apr_time_t now = apr_time_now(), start = 0;

    CHECK(cstatus_proc_start_time(getpid(), now, &start));
    /* started within the last minute, not in the future (ticks are 10
     * ms, so allow that much) */
    CHECK(start <= now + apr_time_from_msec(20));
    CHECK(now - start < apr_time_from_sec(60));
    CHECK(!cstatus_proc_start_time(0x7ffffff0, now, &start));
}

int main(void)
{
    test_parse();
    test_own_start();
    return unit_report("test_proc");
}
