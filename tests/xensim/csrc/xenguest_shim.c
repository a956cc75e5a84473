/*
 * libxenguest.so.4.17 shim for xensim: xc_domain_resume (in libxenguest
 * since 4.16) and the suspend event-channel helpers of xg_suspend.c,
 * reimplemented from their documented behaviour (lock file
 * $XENSIM_RUN_DIR/suspend-evtchn-<domid>.lock, default /var/run/xen, taken
 * with a non-blocking F_WRLCK on byte 0; failures reported as EINVAL).
 */
#define _GNU_SOURCE
#include "xensim_rpc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct xc_interface_core xc_interface;
typedef struct xenevtchn_handle xenevtchn_handle;
typedef uint32_t evtchn_port_t;
typedef int xenevtchn_port_or_error_t;

/* from the libxenctrl / libxenevtchn shims */
extern int64_t xensim_xc_call(xc_interface *xch, uint32_t op, const uint64_t *args,
                              uint32_t nargs, void *out, size_t outmax);
extern int xc_domain_getinfolist(xc_interface *xch, uint32_t first_domain,
                                 unsigned int max_domains, void *info);
extern int xc_domain_subscribe_for_suspend(xc_interface *xch, uint32_t domid,
                                           evtchn_port_t port);
extern xenevtchn_port_or_error_t xenevtchn_bind_interdomain(xenevtchn_handle *xce,
                                                            uint32_t domid,
                                                            evtchn_port_t remote_port);
extern int xenevtchn_unbind(xenevtchn_handle *xce, evtchn_port_t port);
extern xenevtchn_port_or_error_t xenevtchn_pending(xenevtchn_handle *xce);
extern int xenevtchn_unmask(xenevtchn_handle *xce, evtchn_port_t port);

#define SHUTDOWN_suspend 2
#define XEN_DOMINF_shutdown (1u << 2)

int xc_domain_resume(xc_interface *xch, uint32_t domid, int fast)
{
    uint64_t a[2] = { domid, (uint64_t)(int64_t)fast };

    if (fast) {
        /* modify_returncode(): the domain must be shut down for suspend. */
        unsigned char info[XENSIM_DOMAININFO_SIZE];
        uint16_t dom;
        uint32_t flags;
        int n = xc_domain_getinfolist(xch, domid, 1, info);

        if (n == 1) {
            memcpy(&dom, info, 2);
            memcpy(&flags, info + 4, 4);
        }
        if (n != 1 || dom != domid) {
            int e = n < 0 ? errno : ESRCH;
            fprintf(stderr, "xc: error: Could not get domain info (%d = %s): "
                    "Internal error\n", e, strerror(e));
            errno = e;
            return -1;
        }
        if (!(flags & XEN_DOMINF_shutdown) || ((flags >> 16) & 0xff) != SHUTDOWN_suspend) {
            fprintf(stderr, "xc: error: Dom %u not suspended: (shutdown %d, "
                    "reason %u): Internal error\n", domid,
                    !!(flags & XEN_DOMINF_shutdown), (flags >> 16) & 0xff);
            errno = EINVAL;
            return -1;
        }
    }
    return (int)xensim_xc_call(xch, XENSIM_OP_XC_RESUME, a, 2, NULL, 0);
}

static const char *run_dir(void)
{
    const char *d = getenv("XENSIM_RUN_DIR");
    return (d && *d) ? d : "/var/run/xen";
}

static int lock_path(uint32_t domid, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s/suspend-evtchn-%u.lock", run_dir(), domid);
    return (n < 0 || (size_t)n >= len) ? -1 : 0;
}

static int lock_suspend_event(uint32_t domid, int *lockfd)
{
    char path[PATH_MAX];
    struct stat a, b;
    struct flock fl;
    int fd;

    if (lock_path(domid, path, sizeof(path)) < 0)
        return -1;
    for (;;) {
        fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
        if (fd < 0)
            return -1;
        memset(&fl, 0, sizeof(fl));
        fl.l_type = F_WRLCK;
        fl.l_whence = SEEK_SET;
        fl.l_start = 0;
        fl.l_len = 1;
        if (fcntl(fd, F_SETLK, &fl) < 0) {
            close(fd);
            return -1;
        }
        /* Someone may have unlinked the file while we were locking it. */
        if (fstat(fd, &a) == 0 && stat(path, &b) == 0 &&
            a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
            *lockfd = fd;
            return 0;
        }
        close(fd);
    }
}

static int unlock_suspend_event(uint32_t domid, int *lockfd)
{
    char path[PATH_MAX];

    if (*lockfd < 0)
        return 0;
    if (lock_path(domid, path, sizeof(path)) == 0)
        unlink(path);
    close(*lockfd);
    *lockfd = -1;
    return 0;
}

int xc_await_suspend(xc_interface *xch, xenevtchn_handle *xce, int suspend_evtchn)
{
    int rc;

    (void)xch;
    do {
        rc = xenevtchn_pending(xce);
        if (rc < 0)
            return -1;
    } while (rc != suspend_evtchn);
    if (xenevtchn_unmask(xce, (evtchn_port_t)suspend_evtchn) < 0)
        return -1;
    return 0;
}

int xc_suspend_evtchn_release(xc_interface *xch, xenevtchn_handle *xce,
                              uint32_t domid, int suspend_evtchn, int *lockfd)
{
    (void)xch;
    if (suspend_evtchn >= 0)
        xenevtchn_unbind(xce, (evtchn_port_t)suspend_evtchn);
    if (*lockfd >= 0) {
        unlock_suspend_event(domid, lockfd);
        /* As in xg_suspend.c: falls through its error label. */
        return -1;
    }
    return 0;
}

int xc_suspend_evtchn_init_sane(xc_interface *xch, xenevtchn_handle *xce,
                                uint32_t domid, int port, int *lockfd)
{
    int local = -1;

    *lockfd = -1;
    if (lock_suspend_event(domid, lockfd) < 0) {
        errno = EINVAL;
        goto cleanup;
    }
    local = xenevtchn_bind_interdomain(xce, domid, (evtchn_port_t)port);
    if (local < 0)
        goto cleanup;
    if (xc_domain_subscribe_for_suspend(xch, domid, (evtchn_port_t)port) < 0)
        goto cleanup;
    return local;

cleanup: {
        int saved = errno;
        xc_suspend_evtchn_release(xch, xce, domid, local, lockfd);
        errno = saved;
    }
    return -1;
}

int xc_suspend_evtchn_init_exclusive(xc_interface *xch, xenevtchn_handle *xce,
                                     uint32_t domid, int port, int *lockfd)
{
    int local = xc_suspend_evtchn_init_sane(xch, xce, domid, port, lockfd);

    if (local < 0)
        return local;
    /* Eat the initial notification from binding. */
    xc_await_suspend(xch, xce, local);
    return local;
}
