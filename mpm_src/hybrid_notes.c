/* hybrid_notes.c: the parent's wake-up pipes (hybrid_notes.h).
 *
 * Owns: the pipes (retained: children of older generations still write to
 * them), the SIGCHLD handler, writing a note (children) and reading them
 * all at once (parent).  Two pipes, so that the parent can stop listening
 * to the frequent "short of idle threads" notes for a moment and still
 * wake at once for a child that exits or must be replaced.
 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "httpd.h"
#include "http_config.h"

#include "hybrid_notes.h"
#include "hybrid_server.h"

#define NOTE_SIZE 4

typedef struct {
    int fd[2];
} notes_retained;

/* short: HYB_NOTE_SHORT; urgent: the others (one retained block each,
 * under its own key, so that neither layout ever changes) */
static notes_retained *short_notes, *urgent_notes;

static apr_status_t open_pipe(const char *key, notes_retained **where)
{
    notes_retained *n = ap_retained_data_get(key);

    if (!n) {
        n = ap_retained_data_create(key, sizeof(*n));
        n->fd[0] = n->fd[1] = -1;
    }
    *where = n;
    if (n->fd[0] >= 0) {
        return APR_SUCCESS;
    }
    if (pipe2(n->fd, O_CLOEXEC | O_NONBLOCK) < 0) {
        n->fd[0] = n->fd[1] = -1;
        return errno;
    }
    return APR_SUCCESS;
}

/* Both, whatever the first one's fate: a pipe that could not be made has
 * -1 for its ends, which poll() skips and writers leave alone. */
apr_status_t hyb_notes_open(void)
{
    apr_status_t urgent = open_pipe("mpm_hybrid_notes", &urgent_notes);
    apr_status_t shorts = open_pipe("mpm_hybrid_short_notes", &short_notes);

    return urgent != APR_SUCCESS ? urgent : shorts;
}

static void write_note(char type, int slot)
{
    char note[NOTE_SIZE] = { type, (char)(slot & 0xff),
                             (char)((slot >> 8) & 0xff),
                             (char)((slot >> 16) & 0xff) };
    notes_retained *n = type == HYB_NOTE_SHORT ? short_notes : urgent_notes;

    if (!n || n->fd[1] < 0) {
        return;
    }
    /* Smaller than PIPE_BUF, so each note is written whole or not at
     * all. */
    if (write(n->fd[1], note, NOTE_SIZE) < 0) {
        /* a full pipe: the parent has plenty to wake up for */
    }
}

static void on_sigchld(int sig)
{
    int saved = errno;

    write_note(HYB_NOTE_CHILD_EXIT, 0);
    errno = saved;
}

/* The handler lives in this DSO, which is unloaded at restart: put the
 * default back before that happens. */
static apr_status_t restore_sigchld(void *unused)
{
    signal(SIGCHLD, SIG_DFL);
    return APR_SUCCESS;
}

void hyb_notes_install_sigchld(apr_pool_t *pconf)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigchld;
    sa.sa_flags = SA_NOCLDSTOP;   /* no SA_RESTART: poll must return */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGCHLD, &sa, NULL);
    apr_pool_cleanup_register(pconf, NULL, restore_sigchld,
                              apr_pool_cleanup_null);
}

/* Reads every note waiting in one pipe; returns 1 if one says a child
 * is short of idle threads (or retiring). */
static int read_notes(int fd, void (*on_retiring)(int))
{
    unsigned char buf[NOTE_SIZE * 64];
    int short_notice = 0;
    ssize_t n, i;

    /* Notes are written whole, so reads stay aligned on note
     * boundaries. */
    while ((n = read(fd, buf, sizeof(buf))) > 0) {
        for (i = 0; i + NOTE_SIZE <= n; i += NOTE_SIZE) {
            short_notice |= buf[i] == HYB_NOTE_SHORT;
            if (buf[i] == HYB_NOTE_RETIRING) {
                on_retiring(buf[i + 1] | buf[i + 2] << 8 | buf[i + 3] << 16);
                short_notice = 1;
            }
        }
    }
    return short_notice;
}

int hyb_notes_wait(apr_interval_time_t timeout, apr_interval_time_t deaf,
                   void (*on_retiring)(int))
{
    struct pollfd pfd[2];

    pfd[0].fd = urgent_notes->fd[0];
    pfd[0].events = POLLIN;
    pfd[1].fd = short_notes->fd[0];
    pfd[1].events = deaf > 0 ? 0 : POLLIN;
    if (deaf > 0 && deaf < timeout) {
        timeout = deaf;
    }
    /* rounded up: a wait cut to whole milliseconds below would wake just
     * before what it waits for, and poll(0) in a loop until then */
    if (poll(pfd, 2, (int)apr_time_as_msec(timeout + 999)) <= 0
        && deaf <= 0) {
        return 0;
    }
    return read_notes(pfd[0].fd, on_retiring)
           | read_notes(pfd[1].fd, on_retiring);
}

static void close_read_end(notes_retained *n)
{
    if (n && n->fd[0] >= 0) {
        close(n->fd[0]);
    }
}

void hyb_notes_child_init(void)
{
    if (!hyb_server.one_process) {
        close_read_end(urgent_notes);
        close_read_end(short_notes);
    }
}

void hyb_notes_send(int slot, char type)
{
    if (!hyb_server.one_process) {
        write_note(type, slot);
    }
}
