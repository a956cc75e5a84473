/*
 * xensim shim <-> simulator RPC (client side).  See xensim/rpcserver.py for
 * the protocol.  Compiled into each shim library with hidden visibility.
 *
 * Socket: $XENSIM_SOCKET, else "$(dirname $XENSTORED_PATH)/hypervisor.sock".
 */
#ifndef XENSIM_RPC_H
#define XENSIM_RPC_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define XENSIM_HIDDEN __attribute__((visibility("hidden")))

enum {
    XENSIM_OP_HELLO_XC = 1,
    XENSIM_OP_HELLO_EVTCHN = 2,
    XENSIM_OP_ATTACH_EVENTS = 3,

    XENSIM_OP_XC_VERSION = 10,
    XENSIM_OP_XC_GETINFOLIST = 11,
    XENSIM_OP_XC_PAUSE = 12,
    XENSIM_OP_XC_UNPAUSE = 13,
    XENSIM_OP_XC_SHUTDOWN = 14,
    XENSIM_OP_XC_RESUME = 15,
    XENSIM_OP_XC_SUBSCRIBE = 16,
    XENSIM_OP_XC_HVM_PARAM_GET = 17,

    XENSIM_OP_EV_NOTIFY = 30,
    XENSIM_OP_EV_BIND_UNBOUND = 31,
    XENSIM_OP_EV_BIND_INTERDOMAIN = 32,
    XENSIM_OP_EV_BIND_VIRQ = 33,
    XENSIM_OP_EV_UNBIND = 34,
    XENSIM_OP_EV_UNMASK = 35,
    XENSIM_OP_EV_RESTRICT = 36,
};

/* Size of struct xen_domctl_getdomaininfo in Xen 4.16..4.22 (x86_64). */
#define XENSIM_DOMAININFO_SIZE 112

struct xensim_conn {
    int fd;
    pthread_mutex_t lock;
};

/* Connect a new stream socket to the simulator: fd, or -1 with errno. */
XENSIM_HIDDEN int xensim_connect(int cloexec);

/* Open/close a locked control connection. 0 / -1 with errno. */
XENSIM_HIDDEN int xensim_conn_open(struct xensim_conn *c, int cloexec);
XENSIM_HIDDEN void xensim_conn_close(struct xensim_conn *c);

/*
 * One request/response on fd (no locking).  Copies up to outmax payload
 * bytes to out (rest discarded), stores the payload length in *outlen if
 * non-NULL.  Returns the server's ret (>= 0) or -1 with errno set.
 */
XENSIM_HIDDEN int64_t xensim_call_fd(int fd, uint32_t op, const uint64_t *args,
                                     uint32_t nargs, void *out, size_t outmax,
                                     size_t *outlen);

/* Same, serialised by the connection's mutex (handles are thread-safe). */
XENSIM_HIDDEN int64_t xensim_call(struct xensim_conn *c, uint32_t op,
                                  const uint64_t *args, uint32_t nargs,
                                  void *out, size_t outmax, size_t *outlen);

#endif
