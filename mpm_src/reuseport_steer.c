/* reuseport_steer.c: which group the kernel gives a new connection to,
 * for AcceptStrategy reuseport.
 *
 * SO_REUSEPORT hashes connections over the groups without knowing which
 * is busy, so a group whose threads are all taken (keep-alive clients pin
 * them) keeps getting its share while another idles, and its clients wait.
 * A program attached to each address's reuseport group picks the group
 * instead, in one of two ways, the first one that the kernel allows:
 *
 *   join the shortest queue (eBPF, needs CAP_BPF and Linux 5.5): an
 *   array map, mapped into memory before the first fork so that every
 *   child shares it, holds each group's room: threads waiting for a
 *   connection minus connections sent to the group and not yet taken.  A
 *   worker adds 1 when it starts waiting (or its connection starts
 *   closing) and takes it back only if it stops without a connection.
 *   The program, which the kernel runs for every new connection, picks a
 *   group at random among those with a free thread, or, when none has
 *   one, the group with the shortest backlog, and takes 1 off its room.
 *   So a connection goes where a thread is free, and the counts stay as
 *   even as the hash's.  Once a second the parent corrects drift (a
 *   handshake that never completed) when it persists; for a second after
 *   a child was killed, whose idle threads still count, it does so on
 *   every pass (20 a second).
 *
 *   weighted random (classic BPF, any kernel with SO_REUSEPORT BPF): 20
 *   times a second the parent attaches a program that picks a group at
 *   random, weighted by the room each had at that moment.
 *
 * Either program returns an index into the kernel's list of the
 * address's sockets, which is the order they started listening in:
 * httpd's listener (group 0) first, then ours by group.  Where that order
 * is not known (httpd reopened its listener while ours stayed), the
 * address keeps the kernel's hash.  The shared room can be written by
 * children: it only steers connections, the parent acts on nothing in it.
 *
 * Owns both ends: the workers' room accounting, the parent's pacing and
 * corrections, and the programs.  Called from: reuseport's open (parent),
 * the parent loop, and the worker loop.
 */

#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/filter.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "apr_strings.h"

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_main.h"

#include "hybrid_child.h"
#include "hybrid_drain.h"
#include "hybrid_retire.h"
#include "hybrid_server.h"
#include "reuseport_steer.h"

/* Past a hundred groups per-group load is noise, and the program's
 * verification grows with the square of the group count; more groups keep
 * the kernel's hash. */
#define RP_STEER_MAX_GROUPS 128
#define RP_STEER_EVERY apr_time_from_msec(50)
#define RP_STEER_EVERY_FIX apr_time_from_sec(1)
#define RP_STEER_DRIFT 2     /* corrections smaller than this are noise */

#ifndef SO_ATTACH_REUSEPORT_CBPF
#define SO_ATTACH_REUSEPORT_CBPF 51
#endif
#ifndef SO_ATTACH_REUSEPORT_EBPF
#define SO_ATTACH_REUSEPORT_EBPF 52
#endif
#ifndef SO_DETACH_REUSEPORT_BPF
#define SO_DETACH_REUSEPORT_BPF 68
#endif

typedef enum { STEER_HASH, STEER_SHORTEST, STEER_WEIGHTED } rp_steer_mode;

/* The shortest-queue program and its map, made once per server life (the
 * map outlives generations, like the groups). */
typedef struct {
    int tried;
    int map_fd, prog_fd;     /* -1 if none */
    int groups;              /* the map's size */
    apr_int32_t *room;       /* [groups], the map's memory, shared */
} steer_retained;

/* One address (parent only, rebuilt each generation). */
typedef struct rp_steer {
    struct rp_steer *next;
    int *fds;                /* [G]: group g's socket in the parent */
    apr_uint32_t *cut;       /* weighted: thresholds attached last time */
    int usable;              /* kernel socket order known */
    int attached;
} rp_steer;

static steer_retained *sr;
static int steer_groups;             /* G of this generation */
static rp_steer *rp_steers;
static rp_steer_mode rp_mode;
static apr_int32_t *rp_drift;        /* shortest: last drift seen, [G] */
static apr_time_t rp_last_steer;
static apr_time_t rp_last_fix;
static apr_time_t rp_fix_fast_until; /* after a crash: correct every pass */

/* Free threads per group, shared with the kernel's program; NULL when
 * nothing steers by it.  Set in the parent, inherited by children. */
static apr_int32_t *room;

/* ------------------------------------------------------------------ */
/* The shortest-queue program, assembled here (no compiler for BPF is
 * needed at build time).  For G groups, with the map value int room[G]
 * and a fresh 32-bit random number r(g) for each group:
 *
 *     room = lookup(map, 0); if (!room) return -1 (the hash);
 *     key(g) = min(room[g], 1) * 2^32 + r(g)
 *     best = the g with the highest key; room[best] -= 1; return best;
 *
 * Clipping the room at 1 makes every group with a free thread equal, so
 * among those the random part decides, and connection counts stay as
 * even as the kernel's hash makes them; only when no group has a free
 * thread does the backlog decide.  The random parts must be independent
 * and wide: an earlier version took the top byte of r * (2g + 1) from a
 * single r, and those bytes are correlated (for 4 groups the maximum fell
 * on groups 0-3 with 28/16/20/35 %), and 8 bits tie often, each tie going
 * to the lower group.  One helper call per group costs some nanoseconds
 * per new connection; 32 bits make ties negligible (2^-32).  The loop is
 * unrolled, so the verifier sees constant offsets. */

typedef struct {
    struct bpf_insn *insn;
    int n;
} bpf_asm;

enum { R0, R1, R2, R3, R4, R5, R6, R7, R8, R10 = 10 };

static void emit(bpf_asm *a, int code, int dst, int src, int off, int imm)
{
    struct bpf_insn *i = &a->insn[a->n++];

    memset(i, 0, sizeof(*i));
    i->code = (apr_byte_t)code;
    i->dst_reg = dst & 0xf;
    i->src_reg = src & 0xf;
    i->off = (short)off;
    i->imm = imm;
}

#define SHORTEST_LEN(G) (32 + 13 * (G))

/* dst = key(g); R7 holds the room array.  The helper call clobbers R0-R5,
 * so only R6-R8 (best group, room array, best key) live across it, and
 * dst must be used before the next call. */
static void emit_key(bpf_asm *a, int dst, int g)
{
    emit(a, BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_get_prandom_u32);
    emit(a, BPF_ALU | BPF_MOV | BPF_X, R0, R0, 0, 0);      /* zero-extend */
    emit(a, BPF_LDX | BPF_MEM | BPF_W, dst, R7, 4 * g, 0);
    emit(a, BPF_ALU64 | BPF_LSH | BPF_K, dst, 0, 0, 32);    /* sign- */
    emit(a, BPF_ALU64 | BPF_ARSH | BPF_K, dst, 0, 0, 32);   /* extend */
    emit(a, BPF_JMP | BPF_JSLE | BPF_K, dst, 0, 1, 1);
    emit(a, BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, 1);     /* clip at 1 */
    emit(a, BPF_ALU64 | BPF_LSH | BPF_K, dst, 0, 0, 32);
    emit(a, BPF_ALU64 | BPF_ADD | BPF_X, dst, R0, 0, 0);
}

static int assemble_shortest(bpf_asm *a, int groups, int map_fd)
{
    int g, miss, hash;

    emit(a, BPF_ST | BPF_MEM | BPF_W, R10, 0, -4, 0);        /* key 0 */
    emit(a, BPF_ALU64 | BPF_MOV | BPF_X, R2, R10, 0, 0);
    emit(a, BPF_ALU64 | BPF_ADD | BPF_K, R2, 0, 0, -4);
    emit(a, BPF_LD | BPF_DW | BPF_IMM, R1, BPF_PSEUDO_MAP_FD, 0, map_fd);
    emit(a, 0, 0, 0, 0, 0);
    emit(a, BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_map_lookup_elem);
    miss = a->n;
    emit(a, BPF_JMP | BPF_JEQ | BPF_K, R0, 0, 0, 0);         /* -> hash */
    emit(a, BPF_ALU64 | BPF_MOV | BPF_X, R7, R0, 0, 0);
    emit_key(a, R8, 0);                                       /* best key */
    emit(a, BPF_ALU64 | BPF_MOV | BPF_K, R6, 0, 0, 0);       /* best g */
    for (g = 1; g < groups; g++) {
        emit_key(a, R2, g);
        emit(a, BPF_JMP | BPF_JSLE | BPF_X, R2, R8, 2, 0);
        emit(a, BPF_ALU64 | BPF_MOV | BPF_X, R8, R2, 0, 0);
        emit(a, BPF_ALU64 | BPF_MOV | BPF_K, R6, 0, 0, g);
    }
    emit(a, BPF_ALU64 | BPF_MOV | BPF_X, R3, R6, 0, 0);
    emit(a, BPF_ALU64 | BPF_LSH | BPF_K, R3, 0, 0, 2);
    emit(a, BPF_ALU64 | BPF_ADD | BPF_X, R3, R7, 0, 0);
    emit(a, BPF_ALU64 | BPF_MOV | BPF_K, R5, 0, 0, -1);
    emit(a, BPF_STX | BPF_ATOMIC | BPF_W, R3, R5, 0, BPF_ADD);
    emit(a, BPF_ALU64 | BPF_MOV | BPF_X, R0, R6, 0, 0);
    emit(a, BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
    hash = a->n;
    emit(a, BPF_ALU | BPF_MOV | BPF_K, R0, 0, 0, -1);  /* out of range */
    emit(a, BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
    a->insn[miss].off = (short)(hash - miss - 1);
    return a->n;
}

static long bpf_call(int cmd, union bpf_attr *attr)
{
    return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

static size_t room_bytes(int groups)
{
    long page = sysconf(_SC_PAGESIZE);

    return (sizeof(apr_int32_t) * groups + page - 1) / page * page;
}

static int make_room_map(int groups)
{
    union bpf_attr attr;
    void *mem;
    int fd;

    memset(&attr, 0, sizeof(attr));
    attr.map_type = BPF_MAP_TYPE_ARRAY;
    attr.key_size = sizeof(apr_uint32_t);
    attr.value_size = sizeof(apr_int32_t) * groups;
    attr.max_entries = 1;
    attr.map_flags = BPF_F_MMAPABLE;
    if ((fd = (int)bpf_call(BPF_MAP_CREATE, &attr)) < 0) {
        return -1;
    }
    mem = mmap(NULL, room_bytes(groups), PROT_READ | PROT_WRITE, MAP_SHARED,
               fd, 0);
    if (mem == MAP_FAILED) {
        int saved = errno;

        close(fd);
        errno = saved;
        return -1;
    }
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    sr->map_fd = fd;
    sr->room = mem;
    return 0;
}

static int load_shortest(apr_pool_t *p, server_rec *s, int groups)
{
    struct bpf_insn *insn = apr_pcalloc(p, sizeof(*insn)
                                           * SHORTEST_LEN(groups));
    bpf_asm a = { insn, 0 };
    union bpf_attr attr;
    int fd;

    memset(&attr, 0, sizeof(attr));
    attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
    attr.insn_cnt = (apr_uint32_t)assemble_shortest(&a, groups, sr->map_fd);
    attr.insns = (apr_uint64_t)(uintptr_t)insn;
    attr.license = (apr_uint64_t)(uintptr_t)"Apache-2.0";
    if ((fd = (int)bpf_call(BPF_PROG_LOAD, &attr)) < 0) {
        char *log = apr_pcalloc(p, 4096);
        int saved = errno;

        /* Again, for the verifier's reason (a log costs verifier time,
         * so only now). */
        attr.log_buf = (apr_uint64_t)(uintptr_t)log;
        attr.log_size = 4096;
        attr.log_level = 1;
        fd = (int)bpf_call(BPF_PROG_LOAD, &attr);
        if (fd < 0) {
            ap_log_error(APLOG_MARK, APLOG_DEBUG, saved, s, HYBLOGNO(00105)
                         "reuseport: loading the shortest-queue program "
                         "failed; the verifier said: %.400s", log);
            errno = saved;
            return -1;
        }
    }
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    sr->prog_fd = fd;
    return 0;
}

static void steer_retained_get(void)
{
    static const char key[] = "mpm_hybrid_steer";

    sr = ap_retained_data_get(key);
    if (!sr) {
        sr = ap_retained_data_create(key, sizeof(*sr));
        sr->map_fd = sr->prog_fd = -1;
    }
}

/* Once per server life: the group count is fixed at the first start. */
static void make_shortest_once(apr_pool_t *p, server_rec *s, int groups)
{
    if (sr->tried) {
        return;
    }
    sr->tried = 1;
    sr->groups = groups;
    if (make_room_map(groups) < 0 || load_shortest(p, s, groups) < 0) {
        ap_log_error(APLOG_MARK, APLOG_INFO, errno, s, HYBLOGNO(00106)
                     "reuseport: cannot load the shortest-queue program "
                     "(needs CAP_BPF and Linux 5.5); steering by weighted "
                     "random, updated 20 times a second");
        if (sr->room) {
            munmap(sr->room, room_bytes(groups));
            sr->room = NULL;
        }
        if (sr->map_fd >= 0) {
            close(sr->map_fd);
            sr->map_fd = -1;
        }
    }
}

/* ------------------------------------------------------------------ */
/* Per address                                                        */

static void steer_detach(rp_steer *st)
{
    setsockopt(st->fds[1], SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, NULL, 0);
    st->attached = 0;
}

static rp_steer *steer_add(apr_pool_t *p, server_rec *s,
                           const hyb_steer_addr *sa)
{
    rp_steer *st = apr_pcalloc(p, sizeof(*st));

    st->fds = apr_pmemdup(p, sa->fds, sizeof(int) * steer_groups);
    st->cut = apr_pcalloc(p, sizeof(apr_uint32_t) * steer_groups);
    st->usable = steer_groups <= RP_STEER_MAX_GROUPS && sa->in_order;
    if (!st->usable) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, HYBLOGNO(00103)
                     "reuseport: connections to %pI are spread by the "
                     "kernel's hash, not by load (%s)", sa->addr,
                     steer_groups > RP_STEER_MAX_GROUPS
                     ? "more than 128 groups"
                     : "httpd reopened its listener; a full stop and start "
                       "restores steering");
        steer_detach(st);
    }
    else if (rp_mode == STEER_SHORTEST
             && setsockopt(st->fds[1], SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF,
                           &sr->prog_fd, sizeof(sr->prog_fd)) < 0) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, errno, s, HYBLOGNO(00107)
                     "reuseport: cannot attach the shortest-queue program "
                     "to %pI; the kernel's hash spreads its connections",
                     sa->addr);
        st->usable = 0;
    }
    return st;
}

void hyb_steer_open(apr_pool_t *p, server_rec *s, int groups,
                    const hyb_steer_addr *addrs, int naddrs)
{
    int i;

    rp_steers = NULL;
    room = NULL;
    rp_mode = STEER_HASH;
    steer_groups = groups;
    if (groups < 2 || groups > RP_STEER_MAX_GROUPS) {
        return;
    }
    steer_retained_get();
    make_shortest_once(p, s, groups);
    rp_mode = sr->prog_fd >= 0 ? STEER_SHORTEST : STEER_WEIGHTED;
    if (rp_mode == STEER_SHORTEST) {
        room = sr->room;               /* inherited by the children */
        rp_drift = apr_pcalloc(p, sizeof(*rp_drift) * groups);
    }
    for (i = 0; i < naddrs; i++) {
        rp_steer *st = steer_add(p, s, &addrs[i]);

        st->next = rp_steers;
        rp_steers = st;
    }
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, HYBLOGNO(00108)
                 "reuseport: steering new connections by %s",
                 rp_mode == STEER_SHORTEST
                 ? "shortest queue (eBPF)"
                 : "weighted random (classic BPF, 20 updates a second)");
}

/* ------------------------------------------------------------------ */
/* Parent, several times a second                                      */

apr_interval_time_t hyb_steer_max_sleep(void)
{
    return rp_mode == STEER_HASH ? -1 : 2 * RP_STEER_EVERY;
}

int hyb_steer_due(apr_time_t now)
{
    if (rp_last_steer > now) {
        rp_last_steer = 0;      /* the wall clock stepped back */
    }
    if (rp_mode == STEER_HASH || now - rp_last_steer < RP_STEER_EVERY) {
        return 0;
    }
    rp_last_steer = now;
    return 1;
}

static unsigned queued_in_group(int g)
{
    unsigned n = 0;
    rp_steer *st;

    for (st = rp_steers; st; st = st->next) {
        n += hyb_listener_queued(st->fds[g]);
    }
    return n;
}

/* Shortest queue: the room should be free threads minus queued
 * connections.  A difference that lasts two passes in a row is drift, not
 * a count caught mid-update: add it. */
static void fix_drift(const int *free_threads)
{
    int g;

    for (g = 0; g < steer_groups; g++) {
        apr_int64_t truth = (apr_int64_t)free_threads[g] - queued_in_group(g);
        apr_int64_t d = truth - __atomic_load_n(&room[g], __ATOMIC_RELAXED);

        if (d > INT32_MAX / 2 || d < -(INT32_MAX / 2)) {
            /* children can write this memory: never do arithmetic that
             * could overflow on whatever they left there */
            __atomic_store_n(&room[g], (apr_int32_t)truth, __ATOMIC_RELAXED);
            d = 0;
        }
        else if ((d > RP_STEER_DRIFT && rp_drift[g] > RP_STEER_DRIFT)
                 || (d < -RP_STEER_DRIFT && rp_drift[g] < -RP_STEER_DRIFT)) {
            __atomic_add_fetch(&room[g], (apr_int32_t)d, __ATOMIC_RELAXED);
            d = 0;
        }
        rp_drift[g] = (apr_int32_t)d;
    }
}

/* Weighted: room per group for one address; when no group has any,
 * capacity (children) instead. */
static apr_uint32_t group_room(const rp_steer *st, const int *free_threads,
                               const int *children, apr_uint32_t *out)
{
    apr_uint32_t total = 0;
    int g;

    for (g = 0; g < steer_groups; g++) {
        unsigned queued = hyb_listener_queued(st->fds[g]);

        out[g] = free_threads[g] > 0 && (unsigned)free_threads[g] > queued
                 ? (unsigned)free_threads[g] - queued : 0;
        total += out[g];
    }
    if (total == 0) {
        for (g = 0; g < steer_groups; g++) {
            out[g] = children[g] > 0 ? (apr_uint32_t)children[g] : 0;
            total += out[g];
        }
    }
    return total;
}

/* Random r in [0, 65536): group g gets r in [cut[g-1], cut[g]). */
static int attach_weighted(rp_steer *st, const apr_uint32_t *cut)
{
    struct sock_filter prog[2 + 2 * RP_STEER_MAX_GROUPS];
    struct sock_fprog fprog;
    int g, n = 0;

    prog[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                                             SKF_AD_OFF + SKF_AD_RANDOM);
    prog[n++] = (struct sock_filter)BPF_STMT(BPF_ALU | BPF_AND | BPF_K,
                                             0xffff);
    for (g = 0; g < steer_groups - 1; g++) {
        prog[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K,
                                                 cut[g], 1, 0);
        prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K,
                                                 (apr_uint32_t)g);
    }
    prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K,
                                             (apr_uint32_t)steer_groups - 1);
    fprog.len = (unsigned short)n;
    fprog.filter = prog;
    return setsockopt(st->fds[1], SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF,
                      &fprog, sizeof(fprog));
}

/* Thresholds are rounded to 1/256 so that small changes do not make the
 * parent attach a new program on every pass. */
static void steer_weighted(rp_steer *st, const int *free_threads,
                           const int *children)
{
    apr_uint32_t weight[RP_STEER_MAX_GROUPS], cut[RP_STEER_MAX_GROUPS];
    apr_uint32_t total, sum = 0;
    int g;

    if (!(total = group_room(st, free_threads, children, weight))) {
        return;
    }
    for (g = 0; g < steer_groups; g++) {
        sum += weight[g];
        cut[g] = (apr_uint32_t)(((apr_uint64_t)sum << 16) / total) & ~0xffu;
    }
    if (st->attached && !memcmp(cut, st->cut, sizeof(*cut) * steer_groups)) {
        return;
    }
    if (attach_weighted(st, cut) < 0) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, errno, ap_server_conf,
                     HYBLOGNO(00104) "reuseport: cannot attach the "
                     "load-steering program; connections are spread by "
                     "the kernel's hash");
        st->usable = 0;
        return;
    }
    memcpy(st->cut, cut, sizeof(*cut) * steer_groups);
    st->attached = 1;
}

void hyb_steer_update(const int *free_threads, const int *children)
{
    apr_time_t now = apr_time_now();
    rp_steer *st;

    if (rp_mode == STEER_SHORTEST) {
        if (now - rp_last_fix >= RP_STEER_EVERY_FIX
            || now < rp_fix_fast_until) {
            rp_last_fix = now;
            fix_drift(free_threads);
        }
        return;
    }
    for (st = rp_steers; st; st = st->next) {
        if (st->usable) {
            steer_weighted(st, free_threads, children);
        }
    }
}

/* The killed child's waiting threads are still counted as room in its
 * group.  Correct soon rather than in a second or two, or new
 * connections would queue for its replacement. */
void hyb_steer_child_killed(void)
{
    rp_fix_fast_until = apr_time_now() + apr_time_from_sec(1);
}

/* ------------------------------------------------------------------ */
/* Workers: the room of their group.  A thread counts while it waits for
 * a connection.  The program takes 1 off when it sends a connection to
 * the group, so a thread that accepts one leaves quietly; one that stops
 * without a connection takes its 1 back. */

void hyb_steer_room_wait(hyb_thread *t)
{
    hyb_child *ch = t->child;

    /* A child past MaxConnectionsPerChild waits for its replacement: it
     * takes what its group is sent, but the group is not offered as free
     * on its account. */
    if (room && !t->counted_in_room && !hyb_child_stopping(ch)
        && !hyb_retire_spent(ch)) {
        t->counted_in_room = 1;
        __atomic_add_fetch(&room[ch->group], 1, __ATOMIC_RELAXED);
    }
}

void hyb_steer_room_took(hyb_thread *t)
{
    t->counted_in_room = 0;
}

void hyb_steer_room_leave(hyb_thread *t)
{
    if (t->counted_in_room) {
        t->counted_in_room = 0;
        __atomic_sub_fetch(&room[t->child->group], 1, __ATOMIC_RELAXED);
    }
}
