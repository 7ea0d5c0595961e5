/* hybrid_notes.c: the parent's wake-up pipe (hybrid_notes.h).
 *
 * Owns: the pipe (retained: children of older generations still write to
 * it), the SIGCHLD handler, writing a note (children) and reading them
 * all at once (parent).
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

static notes_retained *notes;

apr_status_t hyb_notes_open(void)
{
    static const char key[] = "mpm_hybrid_notes";

    notes = ap_retained_data_get(key);
    if (!notes) {
        notes = ap_retained_data_create(key, sizeof(*notes));
        notes->fd[0] = notes->fd[1] = -1;
    }
    if (notes->fd[0] >= 0) {
        return APR_SUCCESS;
    }
    if (pipe2(notes->fd, O_CLOEXEC | O_NONBLOCK) < 0) {
        notes->fd[0] = notes->fd[1] = -1;
        return errno;
    }
    return APR_SUCCESS;
}

static void write_note(char type, int slot)
{
    char note[NOTE_SIZE] = { type, (char)(slot & 0xff),
                             (char)((slot >> 8) & 0xff),
                             (char)((slot >> 16) & 0xff) };

    if (!notes || notes->fd[1] < 0) {
        return;
    }
    /* Smaller than PIPE_BUF, so each note is written whole or not at
     * all. */
    if (write(notes->fd[1], note, NOTE_SIZE) < 0) {
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

int hyb_notes_wait(apr_interval_time_t timeout, apr_interval_time_t deaf,
                   void (*on_retiring)(int))
{
    struct pollfd pfd;
    unsigned char buf[NOTE_SIZE * 64];
    int short_notice = 0;
    ssize_t n, i;

    pfd.fd = notes->fd[0];
    pfd.events = deaf > 0 ? 0 : POLLIN;
    if (deaf > 0 && deaf < timeout) {
        timeout = deaf;
    }
    /* rounded up: a wait cut to whole milliseconds below would wake just
     * before what it waits for, and poll(0) in a loop until then */
    if (poll(&pfd, 1, (int)apr_time_as_msec(timeout + 999)) <= 0
        && deaf <= 0) {
        return 0;
    }
    /* Notes are written whole, so reads stay aligned on note
     * boundaries. */
    while ((n = read(pfd.fd, buf, sizeof(buf))) > 0) {
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

void hyb_notes_child_init(void)
{
    if (!hyb_server.one_process && notes && notes->fd[0] >= 0) {
        close(notes->fd[0]);
    }
}

void hyb_notes_send(int slot, char type)
{
    if (!hyb_server.one_process) {
        write_note(type, slot);
    }
}
