/*
 * testbed-guest-agent: user-space helper inside the test bed's Linux PV guests.
 *
 * 1. Heartbeat: every HEARTBEAT_MS it writes an increasing counter to the guest's own
 *    ~/data/heartbeat, so a test can prove the guest stopped while suspended and runs
 *    again after resume.
 * 2. With --evtchn, the guest side of the event-channel suspend protocol, which upstream Linux
 *    does not implement: allocate an unbound port whose remote end is dom0, publish it in
 *    ~/device/suspend/event-channel, and when the toolstack signals it ask the guest kernel to
 *    suspend by writing "suspend" to our own ~/control/shutdown (drivers/xen/manage.c acts on
 *    that). Each notification is counted in ~/data/evtchn-notifications.
 *
 * Talks to xenstore through /dev/xen/xenbus with the plain wire protocol (xs_wire.h), so the
 * initramfs needs nothing but busybox and this static binary.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
typedef uint16_t domid_t; /* the uapi header uses it without defining it */
#include <xen/evtchn.h>

#define HEARTBEAT_MS 500
#define XS_WRITE 11
#define XS_ERROR 16

struct xs_header {
    uint32_t type;
    uint32_t req_id;
    uint32_t tx_id;
    uint32_t len;
};

static int xenbus_fd = -1;
static uint32_t next_req_id = 1;

static int xenbus_open(void)
{
    if (xenbus_fd < 0)
        xenbus_fd = open("/dev/xen/xenbus", O_RDWR | O_CLOEXEC);
    return xenbus_fd;
}

static void xenbus_reset(void)
{
    if (xenbus_fd >= 0)
        close(xenbus_fd);
    xenbus_fd = -1;
}

/* One request, one reply: the device hands back the reply to the request just written. */
static int store_write(const char *path, const char *value)
{
    unsigned char msg[sizeof(struct xs_header) + 512];
    struct xs_header hdr;
    size_t path_len = strlen(path) + 1, value_len = strlen(value);
    ssize_t got;

    if (path_len + value_len > sizeof(msg) - sizeof(hdr) || xenbus_open() < 0)
        return -1;
    hdr.type = XS_WRITE;
    hdr.req_id = next_req_id++;
    hdr.tx_id = 0;
    hdr.len = (uint32_t)(path_len + value_len);
    memcpy(msg, &hdr, sizeof(hdr));
    memcpy(msg + sizeof(hdr), path, path_len);
    memcpy(msg + sizeof(hdr) + path_len, value, value_len);
    if (write(xenbus_fd, msg, sizeof(hdr) + hdr.len) != (ssize_t)(sizeof(hdr) + hdr.len)) {
        xenbus_reset();
        return -1;
    }
    got = read(xenbus_fd, msg, sizeof(msg));
    if (got < (ssize_t)sizeof(hdr)) {
        xenbus_reset();
        return -1;
    }
    memcpy(&hdr, msg, sizeof(hdr));
    return hdr.type == XS_ERROR ? -1 : 0;
}

static int publish_suspend_port(void)
{
    struct ioctl_evtchn_bind_unbound_port request = { .remote_domain = 0 };
    char text[16];
    int fd = open("/dev/xen/evtchn", O_RDWR | O_CLOEXEC);
    int port;

    if (fd < 0) {
        perror("testbed-guest-agent: /dev/xen/evtchn");
        return -1;
    }
    port = ioctl(fd, IOCTL_EVTCHN_BIND_UNBOUND_PORT, &request);
    if (port < 0) {
        perror("testbed-guest-agent: bind unbound port");
        close(fd);
        return -1;
    }
    snprintf(text, sizeof(text), "%d", port);
    if (store_write("device/suspend/event-channel", text) != 0) {
        fprintf(stderr, "testbed-guest-agent: cannot publish port %d\n", port);
        close(fd);
        return -1;
    }
    printf("testbed-guest-agent: suspend event channel is port %d\n", port);
    return fd;
}

int main(int argc, char **argv)
{
    int evtchn_fd = -1;
    unsigned long beats = 0, notifications = 0;
    char text[32];

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1 && strcmp(argv[1], "--evtchn") == 0)
        evtchn_fd = publish_suspend_port();

    for (;;) {
        struct pollfd pfd = { .fd = evtchn_fd, .events = POLLIN };
        int ready = poll(&pfd, evtchn_fd >= 0 ? 1 : 0, HEARTBEAT_MS);

        if (ready > 0 && (pfd.revents & POLLIN)) {
            uint32_t port;
            if (read(evtchn_fd, &port, sizeof(port)) == sizeof(port)) {
                /* the driver leaves the port masked until we write it back */
                if (write(evtchn_fd, &port, sizeof(port)) != sizeof(port))
                    perror("testbed-guest-agent: unmask");
                snprintf(text, sizeof(text), "%lu", ++notifications);
                store_write("data/evtchn-notifications", text);
                store_write("control/shutdown", "suspend");
            }
            continue;
        }
        if (ready < 0 && errno != EINTR)
            perror("testbed-guest-agent: poll");
        snprintf(text, sizeof(text), "%lu", ++beats);
        store_write("data/heartbeat", text);
    }
}
