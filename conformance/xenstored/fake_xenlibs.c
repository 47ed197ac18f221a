/*
 * fake_xenlibs.c: the Xen libraries xenstored calls, faked (no hypervisor), loaded with LD_PRELOAD.
 *
 * Part of xenstream-conformance (conformance/xenstored/).  It provides the few
 * Xen library functions C xenstored calls (Xen 4.17 and 4.20: see `nm -D
 * xenstored`), so that the daemon starts, restores a live-update stream and
 * serves its unix socket on a machine with no hypervisor:
 *
 *   - xc_interface_open/close: a handle that is never used for anything;
 *   - xc_domain_getinfo (4.17) and xc_domain_getinfo_single (4.20): every
 *     domain id below DOMID_FIRST_RESERVED exists, is running, not dying, not
 *     shut down; ids listed in $XENSTREAM_FAKEXEN_GONE do not exist;
 *   - xenevtchn_*: the handle's fd is a real pollable fd (an eventfd that is
 *     never signalled, inheritable across exec as the real one is); ports are
 *     handed out from a counter; notify, unmask and unbind succeed;
 *   - xengnttab_*: mapping a grant gives an anonymous zeroed page (a shared
 *     ring with nothing in it);
 *   - open("/proc/xen/xsd_port") and open("/proc/xen/xsd_kva") (dom0's event
 *     channel and ring page) open "xsd_port" and "xsd_kva" in
 *     $XENSTORED_RUNDIR instead, which the launcher writes;
 *   - poll(): the first call that waits (more than one fd, or a timeout
 *     other than 0: the daemon's main loop, not the flush of a closing
 *     connection) writes "R" to the fd named by $XENSTREAM_FAKEXEN_READY_FD
 *     and closes it: the daemon has read its state and waits for work (the
 *     variable is then removed, so that a live update's new daemon does not
 *     write to whatever that fd number names by then).
 *
 * Every call is logged to stderr when $XENSTREAM_FAKEXEN_TRACE is set.
 * Only syscalls and plain libc: built with the host's cc, it runs under the
 * host's C library and under Debian 13's (Xen 4.20's own loader) alike.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define DOMID_FIRST_RESERVED 0x7FF0U
#define PAGE 4096

static void trace(const char *fmt, ...)
{
    va_list ap;
    if (!getenv("XENSTREAM_FAKEXEN_TRACE"))
        return;
    va_start(ap, fmt);
    fputs("fakexen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* Does domain `domid` exist?  Every id below DOMID_FIRST_RESERVED, except
 * those listed (comma-separated decimal) in $XENSTREAM_FAKEXEN_GONE. */
int fakexen_domain_exists(unsigned int domid)
{
    const char *gone = getenv("XENSTREAM_FAKEXEN_GONE");
    if (domid >= DOMID_FIRST_RESERVED)
        return 0;
    while (gone && *gone) {
        char *end;
        unsigned long id = strtoul(gone, &end, 10);
        if (end == gone)
            break;
        if (id == domid)
            return 0;
        gone = *end == ',' ? end + 1 : end;
        if (*end != ',')
            break;
    }
    return 1;
}

/* ---- libxenctrl ------------------------------------------------------- */

static int xc_dummy;

void *xc_interface_open(void *logger, void *dombuild_logger, unsigned int flags)
{
    (void)logger; (void)dombuild_logger; (void)flags;
    trace("xc_interface_open");
    return &xc_dummy;
}

int xc_interface_close(void *xch)
{
    (void)xch;
    return 0;
}

/* Xen 4.17: fills xc_dominfo_t (domid, ssidref, then the flag bits dying,
 * crashed, shutdown, ... in one word); returns the number of domains. */
int xc_domain_getinfo(void *xch, uint32_t first_domid, unsigned int max_doms, void *info)
{
    uint32_t *w = info;
    (void)xch;
    trace("xc_domain_getinfo(%u, %u)", first_domid, max_doms);
    if (!max_doms || !fakexen_domain_exists(first_domid))
        return 0;
    w[0] = first_domid;  /* domid */
    w[1] = 0;            /* ssidref */
    w[2] = 0;            /* dying, crashed, shutdown, ...: all clear */
    return 1;
}

/* Xen 4.20: fills struct xen_domctl_getdomaininfo (domain, pad1, flags);
 * returns 0, or -1 with errno ESRCH when the domain does not exist. */
int xc_domain_getinfo_single(void *xch, uint32_t domid, void *info)
{
    uint16_t *h = info;
    uint32_t *w = info;
    (void)xch;
    trace("xc_domain_getinfo_single(%u)", domid);
    if (!fakexen_domain_exists(domid)) {
        errno = ESRCH;
        return -1;
    }
    h[0] = (uint16_t)domid;  /* domain */
    h[1] = 0;                /* pad1 */
    w[1] = 0;                /* flags: not dying, not shut down */
    return 0;
}

/* ---- libxenevtchn ----------------------------------------------------- */

struct fake_evtchn {
    int fd;
};

static unsigned int next_port = 1;

static struct fake_evtchn *evtchn_new(int fd)
{
    struct fake_evtchn *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->fd = fd;
    return h;
}

void *xenevtchn_open(void *logger, unsigned int flags)
{
    int fd = eventfd(0, EFD_NONBLOCK);  /* inherited across exec, as XENEVTCHN_NO_CLOEXEC asks */
    (void)logger; (void)flags;
    trace("xenevtchn_open -> fd %d", fd);
    if (fd < 0)
        return NULL;
    return evtchn_new(fd);
}

/* Whether fd is an eventfd: what the launcher places at GLOBAL_DATA's
 * evtchn-fd, our stand-in for the event channel device. */
static int is_eventfd(int fd)
{
    char link[64], target[64];
    ssize_t n;
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    n = readlink(link, target, sizeof(target) - 1);
    if (n < 0)
        return 0;
    target[n] = '\0';
    return strcmp(target, "anon_inode:[eventfd]") == 0;
}

/* A live-update restart gets the fd its predecessor had (GLOBAL_DATA
 * evtchn-fd).  When that fd is not the event channel device here (not open:
 * a stream written elsewhere; or something else: fds 0-2, which the launcher
 * keeps for the daemon's stdin and output, or the fd of a socket the stream
 * names too), a fresh one stands in, as a new event channel device would:
 * the predecessor's process context cannot be had, and reading events from
 * /dev/null or a socket would fail the daemon for our doing. */
void *xenevtchn_fdopen(void *logger, int fd, unsigned int flags)
{
    (void)logger; (void)flags;
    if (fd < 0 || fcntl(fd, F_GETFD) < 0 || !is_eventfd(fd)) {
        int fresh = eventfd(0, EFD_NONBLOCK);
        trace("xenevtchn_fdopen(%d): not an event channel here, fresh fd %d", fd, fresh);
        if (fresh < 0)
            return NULL;
        fd = fresh;
    } else {
        trace("xenevtchn_fdopen(%d)", fd);
    }
    return evtchn_new(fd);
}

int xenevtchn_close(void *xce)
{
    struct fake_evtchn *h = xce;
    if (h) {
        close(h->fd);
        free(h);
    }
    return 0;
}

int xenevtchn_fd(void *xce)
{
    struct fake_evtchn *h = xce;
    return h ? h->fd : -1;
}

int xenevtchn_bind_interdomain(void *xce, uint32_t domid, uint32_t remote_port)
{
    (void)xce;
    trace("xenevtchn_bind_interdomain(%u, %u) -> %u", domid, remote_port, next_port);
    if (!fakexen_domain_exists(domid)) {
        errno = ESRCH;
        return -1;
    }
    return (int)next_port++;
}

int xenevtchn_bind_virq(void *xce, unsigned int virq)
{
    (void)xce;
    trace("xenevtchn_bind_virq(%u) -> %u", virq, next_port);
    return (int)next_port++;
}

int xenevtchn_notify(void *xce, uint32_t port)
{
    (void)xce; (void)port;
    return 0;
}

int xenevtchn_unbind(void *xce, uint32_t port)
{
    (void)xce; (void)port;
    return 0;
}

int xenevtchn_unmask(void *xce, uint32_t port)
{
    (void)xce; (void)port;
    return 0;
}

/* Never called unless the fd polls readable, which ours never does. */
int xenevtchn_pending(void *xce)
{
    struct fake_evtchn *h = xce;
    uint64_t v;
    if (h && read(h->fd, &v, sizeof(v)) == (ssize_t)sizeof(v))
        return 0;
    errno = EAGAIN;
    return -1;
}

/* ---- libxengnttab ----------------------------------------------------- */

static int gnttab_dummy;

void *xengnttab_open(void *logger, unsigned int flags)
{
    (void)logger; (void)flags;
    trace("xengnttab_open");
    return &gnttab_dummy;
}

int xengnttab_close(void *xgt)
{
    (void)xgt;
    return 0;
}

int xengnttab_set_max_grants(void *xgt, uint32_t nr)
{
    (void)xgt; (void)nr;
    return 0;
}

void *xengnttab_map_grant_ref(void *xgt, uint32_t domid, uint32_t ref, int prot)
{
    void *p;
    (void)xgt; (void)prot;
    p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    trace("xengnttab_map_grant_ref(%u, %u) -> %p", domid, ref, p);
    return p == MAP_FAILED ? NULL : p;
}

int xengnttab_unmap(void *xgt, void *start_address, uint32_t count)
{
    (void)xgt;
    return munmap(start_address, (size_t)count * PAGE);
}

/* ---- dom0's event channel and ring page ------------------------------- */

/* The file that stands for `path`, or NULL when `path` is not faked. */
const char *fakexen_redirect(const char *path, char *buf, size_t size)
{
    const char *dir = getenv("XENSTORED_RUNDIR");
    const char *name;
    if (!path || !dir)
        return NULL;
    if (!strcmp(path, "/proc/xen/xsd_port"))
        name = "xsd_port";
    else if (!strcmp(path, "/proc/xen/xsd_kva"))
        name = "xsd_kva";
    else
        return NULL;
    if ((size_t)snprintf(buf, size, "%s/%s", dir, name) >= size)
        return NULL;
    return buf;
}

static int open_common(const char *path, int flags, mode_t mode)
{
    char buf[4096];
    const char *to = fakexen_redirect(path, buf, sizeof(buf));
    if (to) {
        trace("open(%s) -> %s", path, to);
        path = to;
    }
    return (int)syscall(SYS_openat, AT_FDCWD, path, flags, mode);
}

int open(const char *path, int flags, ...)
{
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    return open_common(path, flags, mode);
}

/* the same function under its large-file name */
int open64(const char *path, int flags, ...) __attribute__((alias("open")));

/* ---- readiness -------------------------------------------------------- */

static int ready_sent;

/* Is this poll() the daemon's main loop (rather than a non-blocking check)? */
int fakexen_is_main_loop_poll(unsigned long nfds, int timeout)
{
    return nfds > 1 || timeout != 0;
}

int poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
    if (!ready_sent && fakexen_is_main_loop_poll(nfds, timeout)) {
        const char *v = getenv("XENSTREAM_FAKEXEN_READY_FD");
        ready_sent = 1;
        if (v && *v) {
            char *end;
            long fd = strtol(v, &end, 10);
            if (!*end && fd > 2) {
                ssize_t n = write((int)fd, "R", 1);
                (void)n;
                close((int)fd);
                trace("ready (fd %ld)", fd);
            }
            /* a live update execs the new daemon with this environment: the
             * fd number may name something else by then */
            unsetenv("XENSTREAM_FAKEXEN_READY_FD");
        }
    }
    if (timeout < 0)
        return (int)syscall(SYS_ppoll, fds, nfds, NULL, NULL, (size_t)8);
    {
        struct timespec ts = { timeout / 1000, (long)(timeout % 1000) * 1000000L };
        return (int)syscall(SYS_ppoll, fds, nfds, &ts, NULL, (size_t)8);
    }
}
