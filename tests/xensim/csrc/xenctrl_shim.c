/*
 * libxenctrl.so.4.17 shim for xensim: the subset of the libxenctrl ABI the
 * xen.suspend collection uses, forwarded to the simulator.  Prototypes follow
 * tools/include/xenctrl.h (Xen 4.17); return conventions as libxc: 0 / a
 * count / a pointer on success, -1 / NULL with errno set on failure.
 */
#define _GNU_SOURCE
#include "xensim_rpc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct xentoollog_logger xentoollog_logger;
typedef uint32_t evtchn_port_t;

struct xc_interface_core {
    struct xensim_conn conn;
    unsigned flags;
};
typedef struct xc_interface_core xc_interface;

#define XENVER_version      0
#define XENVER_extraversion 1
#define XENVER_capabilities 3

/* Private entry point for the libxenguest shim (not part of Xen's ABI). */
int64_t xensim_xc_call(xc_interface *xch, uint32_t op, const uint64_t *args,
                       uint32_t nargs, void *out, size_t outmax)
{
    if (!xch) {
        errno = EINVAL;
        return -1;
    }
    return xensim_call(&xch->conn, op, args, nargs, out, outmax, NULL);
}

xc_interface *xc_interface_open(xentoollog_logger *logger,
                                xentoollog_logger *dombuild_logger,
                                unsigned open_flags)
{
    xc_interface *xch;
    uint64_t abi = (4u << 16) | 17u;
    int saved;

    (void)logger;
    (void)dombuild_logger;
    xch = calloc(1, sizeof(*xch));
    if (!xch)
        return NULL;
    xch->flags = open_flags;
    if (xensim_conn_open(&xch->conn, 1) < 0)
        goto fail;
    if (xensim_call(&xch->conn, XENSIM_OP_HELLO_XC, &abi, 1, NULL, 0, NULL) < 0) {
        xensim_conn_close(&xch->conn);
        goto fail;
    }
    return xch;

fail:
    saved = errno;
    fprintf(stderr, "xencall: error: Could not obtain handle on privileged "
            "command interface: %s\n", strerror(saved));
    free(xch);
    errno = saved;
    return NULL;
}

int xc_interface_close(xc_interface *xch)
{
    if (!xch)
        return 0;
    xensim_conn_close(&xch->conn);
    free(xch);
    return 0;
}

int xc_version(xc_interface *xch, int cmd, void *arg)
{
    uint64_t a = (uint64_t)(int64_t)cmd;
    size_t sz = 0;

    switch (cmd) {
    case XENVER_extraversion: sz = 16; break;
    case XENVER_capabilities: sz = 1024; break;
    }
    if (sz && !arg) {
        errno = EFAULT;
        return -1;
    }
    return (int)xensim_xc_call(xch, XENSIM_OP_XC_VERSION, &a, 1, sz ? arg : NULL, sz);
}

int xc_domain_getinfolist(xc_interface *xch, uint32_t first_domain,
                          unsigned int max_domains, void *info)
{
    uint64_t a[2] = { first_domain, max_domains };

    if (!max_domains)
        return 0;
    if (!info) {
        errno = EFAULT;
        return -1;
    }
    return (int)xensim_xc_call(xch, XENSIM_OP_XC_GETINFOLIST, a, 2, info,
                               (size_t)max_domains * XENSIM_DOMAININFO_SIZE);
}

int xc_domain_pause(xc_interface *xch, uint32_t domid)
{
    uint64_t a = domid;
    return (int)xensim_xc_call(xch, XENSIM_OP_XC_PAUSE, &a, 1, NULL, 0);
}

int xc_domain_unpause(xc_interface *xch, uint32_t domid)
{
    uint64_t a = domid;
    return (int)xensim_xc_call(xch, XENSIM_OP_XC_UNPAUSE, &a, 1, NULL, 0);
}

int xc_domain_shutdown(xc_interface *xch, uint32_t domid, int reason)
{
    uint64_t a[2] = { domid, (uint64_t)(int64_t)reason };
    return (int)xensim_xc_call(xch, XENSIM_OP_XC_SHUTDOWN, a, 2, NULL, 0);
}

int xc_domain_subscribe_for_suspend(xc_interface *xch, uint32_t domid,
                                    evtchn_port_t port)
{
    uint64_t a[2] = { domid, port };
    return (int)xensim_xc_call(xch, XENSIM_OP_XC_SUBSCRIBE, a, 2, NULL, 0);
}

int xc_hvm_param_get(xc_interface *xch, uint32_t dom, uint32_t param,
                     uint64_t *value)
{
    uint64_t a[2] = { dom, param };
    uint64_t v = 0;

    if (!value) {
        errno = EFAULT;
        return -1;
    }
    if (xensim_xc_call(xch, XENSIM_OP_XC_HVM_PARAM_GET, a, 2, &v, sizeof(v)) < 0)
        return -1;
    *value = v;
    return 0;
}

int xc_get_hvm_param(xc_interface *xch, uint32_t dom, int param,
                     unsigned long *value)
{
    uint64_t v;

    if (!value) {
        errno = EFAULT;
        return -1;
    }
    if (xc_hvm_param_get(xch, dom, (uint32_t)param, &v) < 0)
        return -1;
    *value = (unsigned long)v;
    return 0;
}
