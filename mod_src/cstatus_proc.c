/* cstatus_proc.c: process start times from /proc/PID/stat.
 *
 * Owns: parsing the stat line and turning boot-relative clock ticks into
 * wall-clock time.  Called from: cstatus_collect.c.  No httpd.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cstatus_proc.h"

/* Fields after the command name: state is the 3rd field, starttime the
 * 22nd, so starttime is the 20th after the ')'. */
#define FIELDS_TO_START 20

int cstatus_proc_parse_start(const char *stat, unsigned long long *ticks)
{
    const char *p = strrchr(stat, ')');
    char *end;
    int field;

    if (p == NULL) {
        return 0;
    }
    p++;
    for (field = 1; field < FIELDS_TO_START; field++) {
        while (*p == ' ') {
            p++;
        }
        if (*p == '\0') {
            return 0;
        }
        while (*p && *p != ' ') {
            p++;
        }
    }
    while (*p == ' ') {
        p++;
    }
    if (*p < '0' || *p > '9') {
        return 0;
    }
    *ticks = strtoull(p, &end, 10);
    return *end == ' ' || *end == '\n' || *end == '\0';
}

int cstatus_proc_start_time(pid_t pid, apr_time_t now, apr_time_t *start)
{
    char path[64], line[1024];
    unsigned long long ticks;
    struct timespec boot;
    long hz = sysconf(_SC_CLK_TCK);
    apr_time_t age;
    size_t n;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    if ((f = fopen(path, "r")) == NULL) {
        return 0;
    }
    n = fread(line, 1, sizeof(line) - 1, f);
    fclose(f);
    line[n] = '\0';
    /* starttime counts from boot on the clock that includes suspend. */
    if (hz <= 0 || !cstatus_proc_parse_start(line, &ticks)
        || clock_gettime(CLOCK_BOOTTIME, &boot) != 0) {
        return 0;
    }
    age = (apr_time_t)boot.tv_sec * APR_USEC_PER_SEC + boot.tv_nsec / 1000
          - (apr_time_t)(ticks * APR_USEC_PER_SEC / (unsigned long long)hz);
    if (age < 0) {
        age = 0;
    }
    *start = now - age;
    return 1;
}
