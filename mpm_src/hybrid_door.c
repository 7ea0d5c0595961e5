/* hybrid_door.c: threads sleep on a futex word until let out (see
 * hybrid_door.h).
 *
 * Why no wake-up is lost: a sleeper counts itself, then reads the word,
 * then looks at shut(); an opener changes the state, then bumps the word,
 * then reads the count.  All sequentially consistent.  If the sleeper saw
 * the old state, it read the word before the bump, so the kernel refuses
 * to put it to sleep on the stale value (EAGAIN) or it is already asleep;
 * and since it counted itself before reading the word, the opener sees
 * the count and wakes it. */
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "hybrid_door.h"

static void futex_wait(volatile apr_uint32_t *word, apr_uint32_t seen)
{
    /* EAGAIN (the word moved on), EINTR: the caller looks again */
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
}

static void futex_wake(volatile apr_uint32_t *word, int n)
{
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

void hyb_door_wait(hyb_door *d, int (*shut)(void *arg), void *arg)
{
    while (shut(arg)) {
        apr_uint32_t seen;

        __atomic_add_fetch(&d->sleepers, 1, __ATOMIC_SEQ_CST);
        seen = __atomic_load_n(&d->turn, __ATOMIC_SEQ_CST);
        if (shut(arg)) {
            futex_wait(&d->turn, seen);
        }
        __atomic_sub_fetch(&d->sleepers, 1, __ATOMIC_SEQ_CST);
    }
}

void hyb_door_open(hyb_door *d, int n)
{
    __atomic_add_fetch(&d->turn, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&d->sleepers, __ATOMIC_SEQ_CST)) {
        futex_wake(&d->turn, n);
    }
}
