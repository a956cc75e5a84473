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
 * 3. Restore into a new domain (`xl save` then `xl restore`): the process, its memory and so
 *    its counter come back, but the interdomain port is gone (a new domain has no event
 *    channels) and the toolstack has created an empty ~/device/suspend/event-channel. Like a
 *    real guest that speaks this protocol, the agent then binds a new port and advertises it
 *    again; it notices by reading its own node back every heartbeat. ~/data/incarnation is a
 *    random token chosen when the agent starts and rewritten unchanged after a restore, so a
 *    test tells "memory came back" (same token, counter continues) from a cold boot (new
 *    token, counter from 1); ~/data/evtchn-advertised counts the advertisements.
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
#define XS_READ 2
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

/* One request, one reply: the device hands back the reply to the request just written.
 * Returns the reply's payload length (the payload copied to reply, NUL-terminated, when reply
 * is given), -2 for an error reply (its errno name in reply), -1 for a broken connection. */
static int store_request(uint32_t type, const char *path, const char *value,
                         char *reply, size_t reply_size)
{
    unsigned char msg[sizeof(struct xs_header) + 512];
    struct xs_header hdr;
    size_t path_len = strlen(path) + 1, value_len = strlen(value);
    ssize_t got;

    if (path_len + value_len > sizeof(msg) - sizeof(hdr) || xenbus_open() < 0)
        return -1;
    hdr.type = type;
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
    if (hdr.len > (size_t)got - sizeof(hdr))
        return -1;
    if (reply) {
        size_t n = hdr.len < reply_size - 1 ? hdr.len : reply_size - 1;
        memcpy(reply, msg + sizeof(hdr), n);
        reply[n] = '\0';
    }
    return hdr.type == XS_ERROR ? -2 : (int)hdr.len;
}

static int store_write(const char *path, const char *value)
{
    return store_request(XS_WRITE, path, value, NULL, 0) < 0 ? -1 : 0;
}

/* A node's length (its value in value), -2 with the errno name in value, -1 unreachable. */
static int store_read(const char *path, char *value, size_t size)
{
    return store_request(XS_READ, path, "", value, size);
}

static int publish_suspend_port(int *port_out)
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
    *port_out = port;
    return fd;
}

/* After a restore into a new domain our advertisement is gone (the toolstack created the node
 * empty) and the old port no longer exists: bind a new one and advertise it. After a
 * cancelled suspend (same domain) the node still holds our port and nothing changes. */
static int advertisement_lost(int port)
{
    char value[32], ours[16];
    int got = store_read("device/suspend/event-channel", value, sizeof(value));

    if (got == -2 && strcmp(value, "ENOENT") == 0)
        return 1;
    if (got < 0)
        return 0; /* cannot tell (store unreachable while resuming): look again next beat */
    snprintf(ours, sizeof(ours), "%d", port);
    return strcmp(value, ours) != 0;
}

static void write_counter(const char *path, unsigned long n)
{
    char text[32];

    snprintf(text, sizeof(text), "%lu", n);
    store_write(path, text);
}

static void make_incarnation(char *token, size_t size)
{
    unsigned char random[8] = { 0 };
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    size_t i;

    if (fd >= 0) {
        if (read(fd, random, sizeof(random)) != (ssize_t)sizeof(random))
            perror("testbed-guest-agent: /dev/urandom");
        close(fd);
    }
    for (i = 0; i < sizeof(random) && 2 * i + 2 < size; i++)
        snprintf(token + 2 * i, 3, "%02x", random[i]);
}

int main(int argc, char **argv)
{
    int evtchn = argc > 1 && strcmp(argv[1], "--evtchn") == 0;
    int evtchn_fd = -1, port = -1;
    unsigned long beats = 0, notifications = 0, advertised = 0;
    char incarnation[17] = "";

    setvbuf(stdout, NULL, _IOLBF, 0);
    make_incarnation(incarnation, sizeof(incarnation));
    printf("testbed-guest-agent: incarnation %s\n", incarnation);

    for (;;) {
        struct pollfd pfd = { .fd = evtchn_fd, .events = POLLIN };
        int ready;

        if (evtchn && (evtchn_fd < 0 || advertisement_lost(port))) {
            /* The old port died with the old domain, but its descriptor stays open for good:
             * releasing a binding whose port vanished in a restore hits BUG_ON(irq < 0) in
             * the guest kernel's evtchn_unbind_from_user() (drivers/xen/evtchn.c, seen on
             * Linux 6.1), which kills this process. One stale descriptor per restore. */
            evtchn_fd = publish_suspend_port(&port);
            if (evtchn_fd >= 0)
                write_counter("data/evtchn-advertised", ++advertised);
            pfd.fd = evtchn_fd;
        }
        ready = poll(&pfd, evtchn_fd >= 0 ? 1 : 0, HEARTBEAT_MS);
        if (ready > 0 && (pfd.revents & POLLIN)) {
            uint32_t fired;
            if (read(evtchn_fd, &fired, sizeof(fired)) == sizeof(fired)) {
                /* the driver leaves the port masked until we write it back */
                if (write(evtchn_fd, &fired, sizeof(fired)) != sizeof(fired))
                    perror("testbed-guest-agent: unmask");
                write_counter("data/evtchn-notifications", ++notifications);
                store_write("control/shutdown", "suspend");
            }
            continue;
        }
        if (ready < 0 && errno != EINTR)
            perror("testbed-guest-agent: poll");
        /* rewritten every beat: a restored domain's store starts without our nodes */
        store_write("data/incarnation", incarnation);
        write_counter("data/heartbeat", ++beats);
    }
}
