/*
 * libxenevtchn.so.1 shim for xensim.  A handle owns a control connection to
 * the simulator and an event-stream connection; xenevtchn_fd() returns the
 * latter, which becomes readable when a port bound by this handle is
 * pending (the simulator writes the port number, as /dev/xen/evtchn does).
 */
#define _GNU_SOURCE
#include "xensim_rpc.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct xentoollog_logger xentoollog_logger;
typedef uint32_t evtchn_port_t;
typedef int xenevtchn_port_or_error_t;
typedef uint16_t domid_t;

#define XENEVTCHN_NO_CLOEXEC (1 << 0)

struct xenevtchn_handle {
    struct xensim_conn ctl;
    int evfd;
};
typedef struct xenevtchn_handle xenevtchn_handle;

xenevtchn_handle *xenevtchn_open(xentoollog_logger *logger, unsigned int flags)
{
    int cloexec = !(flags & XENEVTCHN_NO_CLOEXEC);
    unsigned char secret[8];
    uint64_t attach[2];
    int64_t id;
    xenevtchn_handle *h;
    int saved;

    (void)logger;
    h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->evfd = -1;
    if (xensim_conn_open(&h->ctl, cloexec) < 0)
        goto fail;
    id = xensim_call(&h->ctl, XENSIM_OP_HELLO_EVTCHN, NULL, 0, secret, sizeof(secret), NULL);
    if (id < 0)
        goto fail_ctl;
    h->evfd = xensim_connect(cloexec);
    if (h->evfd < 0)
        goto fail_ctl;
    attach[0] = (uint64_t)id;
    memcpy(&attach[1], secret, sizeof(secret));
    if (xensim_call_fd(h->evfd, XENSIM_OP_ATTACH_EVENTS, attach, 2, NULL, 0, NULL) < 0)
        goto fail_ev;
    return h;

fail_ev:
    saved = errno;
    close(h->evfd);
    errno = saved;
fail_ctl:
    xensim_conn_close(&h->ctl);
fail:
    saved = errno;
    free(h);
    errno = saved;
    return NULL;
}

xenevtchn_handle *xenevtchn_fdopen(xentoollog_logger *logger, int fd, unsigned open_flags)
{
    (void)logger;
    (void)fd;
    (void)open_flags;
    errno = EOPNOTSUPP;
    return NULL;
}

int xenevtchn_close(xenevtchn_handle *xce)
{
    if (!xce)
        return 0;
    if (xce->evfd >= 0)
        close(xce->evfd);
    xensim_conn_close(&xce->ctl);
    free(xce);
    return 0;
}

int xenevtchn_fd(xenevtchn_handle *xce)
{
    return xce->evfd;
}

static int64_t call1(xenevtchn_handle *xce, uint32_t op, uint64_t a)
{
    return xensim_call(&xce->ctl, op, &a, 1, NULL, 0, NULL);
}

int xenevtchn_notify(xenevtchn_handle *xce, evtchn_port_t port)
{
    return call1(xce, XENSIM_OP_EV_NOTIFY, port) < 0 ? -1 : 0;
}

xenevtchn_port_or_error_t xenevtchn_bind_unbound_port(xenevtchn_handle *xce, uint32_t domid)
{
    return (xenevtchn_port_or_error_t)call1(xce, XENSIM_OP_EV_BIND_UNBOUND, domid);
}

xenevtchn_port_or_error_t xenevtchn_bind_interdomain(xenevtchn_handle *xce, uint32_t domid,
                                                     evtchn_port_t remote_port)
{
    uint64_t a[2] = { domid, remote_port };
    return (xenevtchn_port_or_error_t)xensim_call(&xce->ctl, XENSIM_OP_EV_BIND_INTERDOMAIN,
                                                  a, 2, NULL, 0, NULL);
}

xenevtchn_port_or_error_t xenevtchn_bind_virq(xenevtchn_handle *xce, unsigned int virq)
{
    return (xenevtchn_port_or_error_t)call1(xce, XENSIM_OP_EV_BIND_VIRQ, virq);
}

int xenevtchn_unbind(xenevtchn_handle *xce, evtchn_port_t port)
{
    return call1(xce, XENSIM_OP_EV_UNBIND, port) < 0 ? -1 : 0;
}

int xenevtchn_unmask(xenevtchn_handle *xce, evtchn_port_t port)
{
    return call1(xce, XENSIM_OP_EV_UNMASK, port) < 0 ? -1 : 0;
}

int xenevtchn_restrict(xenevtchn_handle *xce, domid_t domid)
{
    return call1(xce, XENSIM_OP_EV_RESTRICT, domid) < 0 ? -1 : 0;
}

/* read(2) of one port from the event stream: blocks unless the fd was made
 * non-blocking (then -1/EAGAIN when nothing is pending).  The port stays
 * masked until xenevtchn_unmask(). */
xenevtchn_port_or_error_t xenevtchn_pending(xenevtchn_handle *xce)
{
    uint32_t port;
    size_t got = 0;

    while (got < sizeof(port)) {
        ssize_t n = read(xce->evfd, (char *)&port + got, sizeof(port) - got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if ((errno == EAGAIN || errno == EWOULDBLOCK) && got) {
                struct pollfd p = { .fd = xce->evfd, .events = POLLIN };
                poll(&p, 1, -1);
                continue;
            }
            return -1;
        }
        if (n == 0) {
            errno = EIO; /* simulator went away */
            return -1;
        }
        got += (size_t)n;
    }
    return (xenevtchn_port_or_error_t)port;
}
