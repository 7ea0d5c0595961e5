/* cstatus_proc.h: when a process started, from /proc.
 *
 * Owns: reading a live child's start time from the kernel, for children
 * that no other source dates (a stock MPM's child that has not had a
 * connection yet).  The parser is pure and unit-tested
 * (test/unit/test_proc.c).
 */
#ifndef CSTATUS_PROC_H
#define CSTATUS_PROC_H

#include <sys/types.h>

#include "apr.h"
#include "apr_time.h"

/* The starttime field (22nd, clock ticks after boot) of a
 * /proc/PID/stat line; 0 if the line is not one.  The command name
 * (2nd field) may hold spaces and parentheses, so fields are counted
 * from its last ')'. */
int cstatus_proc_parse_start(const char *stat, unsigned long long *ticks);

/* When process `pid` started, as wall-clock time; 0 if it cannot be read
 * (gone, or /proc hides other processes).  `now` is the caller's wall
 * clock, so every child of one snapshot is dated against the same
 * instant. */
int cstatus_proc_start_time(pid_t pid, apr_time_t now, apr_time_t *start);

#endif /* CSTATUS_PROC_H */
