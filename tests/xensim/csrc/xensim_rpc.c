/* Client side of the xensim shim RPC.  See xensim_rpc.h. */
#define _GNU_SOURCE
#include "xensim_rpc.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct xensim_resp {
    int64_t ret;
    int32_t err;
    uint32_t len;
};

static int socket_path(char *buf, size_t len)
{
    const char *p = getenv("XENSIM_SOCKET");
    if (p && *p) {
        if (strlen(p) >= len) { errno = ENAMETOOLONG; return -1; }
        strcpy(buf, p);
        return 0;
    }
    p = getenv("XENSTORED_PATH");
    if (p && *p) {
        const char *slash = strrchr(p, '/');
        size_t dirlen = slash ? (size_t)(slash - p) : 1;
        const char *dir = slash ? p : ".";
        if (slash == p) dirlen = 0; /* socket in "/" */
        if (dirlen + sizeof("/hypervisor.sock") > len) { errno = ENAMETOOLONG; return -1; }
        memcpy(buf, dir, dirlen);
        strcpy(buf + dirlen, "/hypervisor.sock");
        return 0;
    }
    errno = ENOENT;
    return -1;
}

int xensim_connect(int cloexec)
{
    struct sockaddr_un sa;
    int fd, saved;

    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if (socket_path(sa.sun_path, sizeof(sa.sun_path)) < 0)
        return -1;
    fd = socket(AF_UNIX, SOCK_STREAM | (cloexec ? SOCK_CLOEXEC : 0), 0);
    if (fd < 0)
        return -1;
    while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        if (errno == EINTR)
            continue;
        saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int read_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len) {
        ssize_t n = recv(fd, p, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0) {
            errno = EIO; /* simulator went away */
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int64_t xensim_call_fd(int fd, uint32_t op, const uint64_t *args, uint32_t nargs,
                       void *out, size_t outmax, size_t *outlen)
{
    unsigned char req[8 + 8 * 16];
    struct xensim_resp resp;
    uint32_t hdr[2] = { op, nargs };
    size_t take;

    if (nargs > 16) {
        errno = EINVAL;
        return -1;
    }
    memcpy(req, hdr, 8);
    if (nargs)
        memcpy(req + 8, args, 8 * (size_t)nargs);
    if (write_all(fd, req, 8 + 8 * (size_t)nargs) < 0)
        return -1;
    if (read_all(fd, &resp, sizeof(resp)) < 0)
        return -1;
    take = resp.len < outmax ? resp.len : outmax;
    if (take && read_all(fd, out, take) < 0)
        return -1;
    for (size_t left = resp.len - take; left;) {
        char junk[512];
        size_t n = left < sizeof(junk) ? left : sizeof(junk);
        if (read_all(fd, junk, n) < 0)
            return -1;
        left -= n;
    }
    if (outlen)
        *outlen = resp.len;
    if (resp.ret < 0) {
        errno = resp.err ? resp.err : EIO;
        return -1;
    }
    return resp.ret;
}

int xensim_conn_open(struct xensim_conn *c, int cloexec)
{
    c->fd = xensim_connect(cloexec);
    if (c->fd < 0)
        return -1;
    pthread_mutex_init(&c->lock, NULL);
    return 0;
}

void xensim_conn_close(struct xensim_conn *c)
{
    int saved = errno;
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
        pthread_mutex_destroy(&c->lock);
    }
    errno = saved;
}

int64_t xensim_call(struct xensim_conn *c, uint32_t op, const uint64_t *args,
                    uint32_t nargs, void *out, size_t outmax, size_t *outlen)
{
    int64_t r;
    int saved;

    pthread_mutex_lock(&c->lock);
    r = xensim_call_fd(c->fd, op, args, nargs, out, outmax, outlen);
    saved = errno;
    pthread_mutex_unlock(&c->lock);
    errno = saved;
    return r;
}
