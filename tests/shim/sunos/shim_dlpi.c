/*
 * shim_dlpi.c - DLPI device nodes for src_c/platform/sunos/ on Linux (see
 * shim.h for how the calls get here, README.md for what is and is not
 * emulated).
 *
 * A stream is a real AF_PACKET SOCK_RAW socket (so its fd polls like the
 * real thing for the engine's loop) plus an entry in a per-fd table: the
 * DLPI state (DL_UNATTACHED, DL_UNBOUND, DL_IDLE), the interface it is
 * attached to, the bound SAP, promiscuous levels, enabled multicast groups,
 * raw mode, and the stream head's read queue: acknowledgements (high
 * priority, ahead of everything), frames this stream sent that promiscuous
 * mode loops back, and the partly read message.  Frames from the wire are
 * taken from the socket when getmsg/read/poll want one, and those the
 * stream would not get on Solaris (other SAPs without DL_PROMISC_SAP,
 * multicast groups not enabled, VLAN-tagged, before the bind) are dropped.
 *
 * Environment: HEART_SHIM_DLPI_STYLE2=1: /dev/net/<if> does not exist,
 * /dev/<driver> opens an unattached style 2 stream and DL_ATTACH_REQ with
 * PPA n attaches it to "<driver>n".  HEART_SHIM_DLPI_NORAW=1: DLIOCRAW
 * fails with EINVAL (frames go as DL_UNITDATA_REQ / DL_UNITDATA_IND).
 */
#define HB_SHIM_NO_RENAME
#include "shim.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/dlpi.h>
#include <sys/socket.h>
#include <time.h>

#define SHIM_MAX_MULTI 16
#define SHIM_MAX_QUEUED 64   /* normal messages; more are dropped */
#define SHIM_FRAME_MAX 65536
#define SHIM_ADDR_LEN 8      /* DLSAP address: MAC + SAP */
#define SHIM_SAP_LEN (-2)    /* the SAP follows the MAC, as on Solaris */

struct shim_msg {
    struct shim_msg *next;
    int hipri;
    uint8_t *ctl;
    int ctllen; /* -1: no control part (M_DATA) */
    int coff;
    uint8_t *data;
    int datalen; /* -1: no data part */
    int doff;
};

struct shim_stream {
    struct shim_stream *next;
    int fd;
    int style; /* 1 or 2 */
    t_uscalar_t state;
    char drv[IFNAMSIZ];
    char ifname[IFNAMSIZ];
    int ifindex;
    int arphrd;
    int mtu;
    uint8_t mac[ETH_ALEN];
    t_uscalar_t sap;
    int promisc_sap, promisc_multi, promisc_phys;
    int raw;
    uint8_t multi[SHIM_MAX_MULTI][ETH_ALEN];
    int nmulti;
    int nqueued; /* normal messages in the queue */
    struct shim_msg *head;
};

static pthread_mutex_t shim_lock = PTHREAD_MUTEX_INITIALIZER;
static struct shim_stream *streams;
static uint8_t rxbuf[SHIM_FRAME_MAX]; /* under shim_lock */

static int env_flag(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' && strcmp(v, "0") != 0;
}

static struct shim_stream *find(int fd)
{
    for (struct shim_stream *s = streams; s != NULL; s = s->next)
        if (s->fd == fd)
            return s;
    return NULL;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- the read queue ---- */

static void msg_free(struct shim_msg *m)
{
    if (m == NULL)
        return;
    free(m->ctl);
    free(m->data);
    free(m);
}

/* Queue a message (copies ctl/data; NULL + -1: no such part).  High
 * priority ones go after the other high-priority ones, ahead of the rest. */
static int enqueue(struct shim_stream *s, int hipri, const void *ctl, int ctllen,
                   const void *data, int datalen)
{
    if (!hipri && s->nqueued >= SHIM_MAX_QUEUED)
        return 0; /* the stream head is full: dropped, as flow control would */
    struct shim_msg *m = calloc(1, sizeof *m);
    if (m == NULL)
        return -ENOMEM;
    m->hipri = hipri;
    m->ctllen = ctllen;
    m->datalen = datalen;
    if (ctllen > 0) {
        m->ctl = malloc((size_t)ctllen);
        if (m->ctl == NULL) {
            msg_free(m);
            return -ENOMEM;
        }
        memcpy(m->ctl, ctl, (size_t)ctllen);
    }
    if (datalen > 0) {
        m->data = malloc((size_t)datalen);
        if (m->data == NULL) {
            msg_free(m);
            return -ENOMEM;
        }
        memcpy(m->data, data, (size_t)datalen);
    }
    struct shim_msg **pp = &s->head;
    if (hipri) {
        while (*pp != NULL && (*pp)->hipri)
            pp = &(*pp)->next;
    } else {
        while (*pp != NULL)
            pp = &(*pp)->next;
        s->nqueued++;
    }
    m->next = *pp;
    *pp = m;
    return 0;
}

static void queue_flush(struct shim_stream *s)
{
    while (s->head != NULL) {
        struct shim_msg *m = s->head;
        s->head = m->next;
        msg_free(m);
    }
    s->nqueued = 0;
}

/* ---- acknowledgements ---- */

static void ack(struct shim_stream *s, const void *ctl, size_t len)
{
    (void)enqueue(s, 1, ctl, (int)len, NULL, -1);
}

static void error_ack(struct shim_stream *s, t_uscalar_t prim, t_uscalar_t err,
                      int unix_errno)
{
    dl_error_ack_t e;
    memset(&e, 0, sizeof e);
    e.dl_primitive = DL_ERROR_ACK;
    e.dl_error_primitive = prim;
    e.dl_errno = err;
    e.dl_unix_errno = (t_uscalar_t)unix_errno;
    ack(s, &e, sizeof e);
}

static void ok_ack(struct shim_stream *s, t_uscalar_t prim)
{
    dl_ok_ack_t o;
    memset(&o, 0, sizeof o);
    o.dl_primitive = DL_OK_ACK;
    o.dl_correct_primitive = prim;
    ack(s, &o, sizeof o);
}

/* MAC + SAP (native ushort), dl_sap_length -2 */
static void dlsap(uint8_t out[SHIM_ADDR_LEN], const uint8_t mac[ETH_ALEN], uint16_t sap)
{
    memcpy(out, mac, ETH_ALEN);
    memcpy(out + ETH_ALEN, &sap, sizeof sap);
}

static void info_ack(struct shim_stream *s)
{
    union {
        dl_info_ack_t a;
        uint8_t b[sizeof(dl_info_ack_t) + SHIM_ADDR_LEN + ETH_ALEN];
    } u;
    memset(&u, 0, sizeof u);
    u.a.dl_primitive = DL_INFO_ACK;
    u.a.dl_max_sdu = (t_uscalar_t)(s->mtu > 0 ? s->mtu : 1500);
    u.a.dl_min_sdu = 1;
    u.a.dl_addr_length = SHIM_ADDR_LEN;
    if (s->state == DL_UNATTACHED)
        u.a.dl_mac_type = DL_ETHER; /* what the driver would drive */
    else if (s->arphrd == ARPHRD_ETHER)
        u.a.dl_mac_type = DL_ETHER;
    else if (s->arphrd == ARPHRD_LOOPBACK)
        u.a.dl_mac_type = DL_LOOP;
    else
        u.a.dl_mac_type = DL_OTHER;
    u.a.dl_current_state = s->state;
    u.a.dl_sap_length = SHIM_SAP_LEN;
    u.a.dl_service_mode = DL_CLDLS;
    u.a.dl_provider_style = s->style == 2 ? DL_STYLE2 : DL_STYLE1;
    u.a.dl_version = DL_VERSION_2;
    size_t off = sizeof u.a;
    if (s->state == DL_IDLE) {
        u.a.dl_addr_offset = (t_uscalar_t)off;
        dlsap(u.b + off, s->mac, (uint16_t)s->sap);
        off += SHIM_ADDR_LEN;
    }
    u.a.dl_brdcst_addr_length = ETH_ALEN;
    u.a.dl_brdcst_addr_offset = (t_uscalar_t)off;
    memset(u.b + off, 0xff, ETH_ALEN);
    off += ETH_ALEN;
    ack(s, &u, off);
}

/* ---- attaching to an interface ---- */

/* 0 or an errno (ENOENT: no such interface) */
static int attach(struct shim_stream *s, const char *ifname)
{
    struct ifreq ifr;
    size_t n = strnlen(ifname, IFNAMSIZ);
    if (n == 0 || n >= IFNAMSIZ)
        return ENOENT;
    unsigned idx = if_nametoindex(ifname);
    if (idx == 0)
        return ENOENT;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, ifname, n);
    if (ioctl(s->fd, SIOCGIFHWADDR, &ifr) < 0)
        return errno == ENODEV ? ENOENT : errno;
    s->arphrd = ifr.ifr_hwaddr.sa_family;
    memcpy(s->mac, ifr.ifr_hwaddr.sa_data, ETH_ALEN);
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, ifname, n);
    s->mtu = ioctl(s->fd, SIOCGIFMTU, &ifr) == 0 ? ifr.ifr_mtu : 1500;
    memcpy(s->ifname, ifname, n + 1);
    s->ifindex = (int)idx;
    s->state = DL_UNBOUND;
    return 0;
}

/* Is there an interface <drv><digits>? */
static int driver_exists(const char *drv)
{
    size_t n = strlen(drv);
    if (n == 0 || n >= IFNAMSIZ)
        return 0;
    struct if_nameindex *all = if_nameindex();
    if (all == NULL)
        return 0;
    int found = 0;
    for (struct if_nameindex *i = all; i->if_index != 0 && !found; i++) {
        const char *p = i->if_name;
        if (strncmp(p, drv, n) != 0 || p[n] == '\0')
            continue;
        p += n;
        while (*p >= '0' && *p <= '9')
            p++;
        found = *p == '\0';
    }
    if_freenameindex(all);
    return found;
}

static int new_stream(int flags, struct shim_stream **out)
{
    int fd = socket(AF_PACKET, SOCK_RAW | ((flags & O_CLOEXEC) ? SOCK_CLOEXEC : 0), 0);
    if (fd < 0)
        return errno == EPERM || errno == EACCES ? EACCES : errno;
    int one = 1;
    (void)setsockopt(fd, SOL_PACKET, PACKET_AUXDATA, &one, sizeof one);
    if (flags & O_NONBLOCK) {
        int fl = fcntl(fd, F_GETFL);
        (void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    }
    struct shim_stream *s = calloc(1, sizeof *s);
    if (s == NULL) {
        close(fd);
        return ENOMEM;
    }
    s->fd = fd;
    s->state = DL_UNATTACHED;
    *out = s;
    return 0;
}

int hb_shim_open(const char *path, int flags, ...)
{
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, unsigned int);
        va_end(ap);
    }
    int style2 = env_flag("HEART_SHIM_DLPI_STYLE2");
    struct shim_stream *s = NULL;
    int err;
    if (path != NULL && strncmp(path, "/dev/net/", 9) == 0) {
        const char *ifname = path + 9;
        if (style2 || strchr(ifname, '/') != NULL || if_nametoindex(ifname) == 0) {
            errno = ENOENT;
            return -1;
        }
        err = new_stream(flags, &s);
        if (err == 0) {
            s->style = 1;
            err = attach(s, ifname);
            if (err != 0) {
                close(s->fd);
                free(s);
            }
        }
    } else if (path != NULL && style2 && strncmp(path, "/dev/", 5) == 0 &&
               strchr(path + 5, '/') == NULL && driver_exists(path + 5)) {
        err = new_stream(flags, &s);
        if (err == 0) {
            s->style = 2;
            snprintf(s->drv, sizeof s->drv, "%s", path + 5);
        }
    } else {
        return open(path, flags, mode);
    }
    if (err != 0) {
        errno = err;
        return -1;
    }
    pthread_mutex_lock(&shim_lock);
    s->next = streams;
    streams = s;
    pthread_mutex_unlock(&shim_lock);
    return s->fd;
}

int hb_shim_close(int fd)
{
    pthread_mutex_lock(&shim_lock);
    for (struct shim_stream **pp = &streams; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->fd == fd) {
            struct shim_stream *s = *pp;
            *pp = s->next;
            queue_flush(s);
            free(s);
            break;
        }
    }
    pthread_mutex_unlock(&shim_lock);
    return close(fd);
}

/* ---- frames from the wire ---- */

static int is_multi_enabled(const struct shim_stream *s, const uint8_t *dst)
{
    for (int i = 0; i < s->nmulti; i++)
        if (memcmp(s->multi[i], dst, ETH_ALEN) == 0)
            return 1;
    return 0;
}

/* Would this stream get the frame on Solaris? */
static int deliverable(const struct shim_stream *s, const uint8_t *f, size_t len,
                       int pkttype, int vlan)
{
    if (s->state != DL_IDLE || vlan || len < ETH_HLEN)
        return 0;
    uint16_t type = (uint16_t)((f[12] << 8) | f[13]);
    if (type == ETH_P_8021Q || type == ETH_P_8021AD)
        return 0; /* belongs to a VLAN link's streams */
    switch (pkttype) {
    case PACKET_HOST:
    case PACKET_BROADCAST:
        break;
    case PACKET_MULTICAST:
        if (!s->promisc_multi && !s->promisc_phys && !is_multi_enabled(s, f))
            return 0;
        break;
    case PACKET_OUTGOING: /* sent by this host: promiscuous streams see it */
        if (!s->promisc_sap && !s->promisc_phys)
            return 0;
        break;
    default: /* PACKET_OTHERHOST */
        if (!s->promisc_phys)
            return 0;
        break;
    }
    return s->promisc_sap || type == s->sap;
}

/* Queue a frame the way the stream hands it up: M_DATA (raw) or
 * DL_UNITDATA_IND + payload. */
static int enqueue_frame(struct shim_stream *s, const uint8_t *f, size_t len)
{
    if (s->raw)
        return enqueue(s, 0, NULL, -1, f, (int)len);
    union {
        dl_unitdata_ind_t ind;
        uint8_t b[sizeof(dl_unitdata_ind_t) + 2 * SHIM_ADDR_LEN];
    } u;
    memset(&u, 0, sizeof u);
    uint16_t sap = (uint16_t)((f[12] << 8) | f[13]);
    u.ind.dl_primitive = DL_UNITDATA_IND;
    u.ind.dl_dest_addr_length = SHIM_ADDR_LEN;
    u.ind.dl_dest_addr_offset = sizeof u.ind;
    u.ind.dl_src_addr_length = SHIM_ADDR_LEN;
    u.ind.dl_src_addr_offset = sizeof u.ind + SHIM_ADDR_LEN;
    u.ind.dl_group_address = f[0] & 1;
    dlsap(u.b + sizeof u.ind, f, sap);
    dlsap(u.b + sizeof u.ind + SHIM_ADDR_LEN, f + ETH_ALEN, sap);
    return enqueue(s, 0, &u, (int)sizeof u, f + ETH_HLEN, (int)(len - ETH_HLEN));
}

/* One frame from the socket into rxbuf (peek: leave it there).  Its
 * length, 0 none waiting, or -errno. */
static ssize_t recv_frame(struct shim_stream *s, int peek, int *pkttype, int *vlan)
{
    struct sockaddr_ll from;
    union {
        struct cmsghdr h;
        char b[CMSG_SPACE(sizeof(struct tpacket_auxdata))];
    } cbuf;
    struct iovec iov;
    struct msghdr msg;

    for (;;) {
        iov.iov_base = rxbuf;
        iov.iov_len = sizeof rxbuf;
        memset(&msg, 0, sizeof msg);
        msg.msg_name = &from;
        msg.msg_namelen = sizeof from;
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = &cbuf;
        msg.msg_controllen = sizeof cbuf;
        ssize_t r = recvmsg(s->fd, &msg, MSG_DONTWAIT | (peek ? MSG_PEEK : 0));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
        }
        *vlan = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level == SOL_PACKET && c->cmsg_type == PACKET_AUXDATA) {
                struct tpacket_auxdata aux;
                memcpy(&aux, CMSG_DATA(c), sizeof aux);
                if (aux.tp_status & TP_STATUS_VLAN_VALID)
                    *vlan = 1;
            }
        }
        *pkttype = from.sll_pkttype;
        if (r > (ssize_t)sizeof rxbuf)
            r = sizeof rxbuf;
        return r;
    }
}

/* Drop what the stream would not get; 1 when the next frame in the socket
 * is one it gets (left there), 0 none, -errno. */
static int peek_deliverable(struct shim_stream *s)
{
    for (;;) {
        int pkttype = 0, vlan = 0;
        ssize_t r = recv_frame(s, 1, &pkttype, &vlan);
        if (r <= 0)
            return (int)r;
        if (deliverable(s, rxbuf, (size_t)r, pkttype, vlan))
            return 1;
        char c;
        (void)recv(s->fd, &c, 1, MSG_DONTWAIT | MSG_TRUNC); /* drop it */
    }
}

/* Move the next frame the stream gets from the socket to its queue: 1,
 * 0 none waiting, -errno. */
static int pull_frame(struct shim_stream *s)
{
    for (;;) {
        int pkttype = 0, vlan = 0;
        ssize_t r = recv_frame(s, 0, &pkttype, &vlan);
        if (r <= 0)
            return (int)r;
        if (!deliverable(s, rxbuf, (size_t)r, pkttype, vlan))
            continue;
        if (s->nqueued >= SHIM_MAX_QUEUED)
            continue; /* full: dropped */
        int rc = enqueue_frame(s, rxbuf, (size_t)r);
        return rc < 0 ? rc : 1;
    }
}

/* Wait (lock held on entry and exit; dropped while waiting) until the
 * queue has a message (a high-priority one if hipri).  0, or an errno. */
static int wait_message(int fd, struct shim_stream **sp, int hipri)
{
    for (;;) {
        struct shim_stream *s = *sp;
        if (s->head != NULL && (!hipri || s->head->hipri))
            return 0;
        int r = pull_frame(s);
        if (r < 0)
            return -r;
        if (r > 0 && !hipri)
            return 0;
        if (r > 0)
            continue;
        int fl = fcntl(fd, F_GETFL);
        if (fl >= 0 && (fl & O_NONBLOCK))
            return EAGAIN;
        pthread_mutex_unlock(&shim_lock);
        struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
        int pr = poll(&p, 1, -1);
        int perr = errno;
        pthread_mutex_lock(&shim_lock);
        if (pr < 0 && perr == EINTR)
            return EINTR;
        *sp = find(fd);
        if (*sp == NULL)
            return EBADF;
    }
}

static void consume_if_done(struct shim_stream *s)
{
    struct shim_msg *m = s->head;
    int crem = m->ctllen > 0 ? m->ctllen - m->coff : 0;
    int drem = m->datalen > 0 ? m->datalen - m->doff : 0;
    if (crem == 0 && drem == 0) {
        s->head = m->next;
        if (!m->hipri)
            s->nqueued--;
        msg_free(m);
    }
}

int hb_shim_getmsg(int fd, struct strbuf *ctl, struct strbuf *data, int *flagsp)
{
    if (flagsp == NULL || (*flagsp & ~RS_HIPRI) != 0) {
        errno = EINVAL;
        return -1;
    }
    pthread_mutex_lock(&shim_lock);
    struct shim_stream *s = find(fd);
    if (s == NULL) {
        pthread_mutex_unlock(&shim_lock);
        errno = fcntl(fd, F_GETFD) < 0 ? EBADF : ENOSTR;
        return -1;
    }
    int err = wait_message(fd, &s, *flagsp & RS_HIPRI);
    if (err != 0) {
        pthread_mutex_unlock(&shim_lock);
        errno = err;
        return -1;
    }
    struct shim_msg *m = s->head;
    int more = 0;
    if (m->ctllen < 0) {
        if (ctl != NULL)
            ctl->len = -1;
    } else if (ctl != NULL && ctl->maxlen >= 0) {
        int n = m->ctllen - m->coff;
        if (n > ctl->maxlen)
            n = ctl->maxlen;
        if (n > 0)
            memcpy(ctl->buf, m->ctl + m->coff, (size_t)n);
        ctl->len = n;
        m->coff += n;
    }
    if (m->ctllen > m->coff)
        more |= MORECTL;
    if (m->datalen < 0) {
        if (data != NULL)
            data->len = -1;
    } else if (data != NULL && data->maxlen >= 0) {
        int n = m->datalen - m->doff;
        if (n > data->maxlen)
            n = data->maxlen;
        if (n > 0)
            memcpy(data->buf, m->data + m->doff, (size_t)n);
        data->len = n;
        m->doff += n;
    }
    if (m->datalen > m->doff)
        more |= MOREDATA;
    *flagsp = m->hipri ? RS_HIPRI : 0;
    consume_if_done(s);
    pthread_mutex_unlock(&shim_lock);
    return more;
}

ssize_t hb_shim_read(int fd, void *buf, size_t n)
{
    pthread_mutex_lock(&shim_lock);
    struct shim_stream *s = find(fd);
    if (s == NULL) {
        pthread_mutex_unlock(&shim_lock);
        return read(fd, buf, n);
    }
    /* read(2) on a stream in the default byte-stream mode: M_DATA only */
    int err = wait_message(fd, &s, 0);
    if (err == 0 && s->head->ctllen >= 0)
        err = EBADMSG;
    if (err != 0) {
        pthread_mutex_unlock(&shim_lock);
        errno = err;
        return -1;
    }
    struct shim_msg *m = s->head;
    size_t k = m->datalen > m->doff ? (size_t)(m->datalen - m->doff) : 0;
    if (k > n)
        k = n;
    if (k > 0)
        memcpy(buf, m->data + m->doff, k);
    m->doff += (int)k;
    consume_if_done(s);
    pthread_mutex_unlock(&shim_lock);
    return (ssize_t)k;
}

/* ---- frames to the wire ---- */

/* Send a whole frame; promiscuous streams see their own (0 or an errno) */
static int send_frame(struct shim_stream *s, const uint8_t *f, size_t len)
{
    struct sockaddr_ll to;
    memset(&to, 0, sizeof to);
    to.sll_family = AF_PACKET;
    to.sll_ifindex = s->ifindex;
    memcpy(&to.sll_protocol, f + 2 * ETH_ALEN, 2);
    to.sll_halen = ETH_ALEN;
    memcpy(to.sll_addr, f, ETH_ALEN);
    int fl = fcntl(s->fd, F_GETFL);
    int flags = fl >= 0 && (fl & O_NONBLOCK) ? MSG_DONTWAIT : 0;
    ssize_t r;
    do {
        r = sendto(s->fd, f, len, flags, (struct sockaddr *)&to, sizeof to);
    } while (r < 0 && errno == EINTR);
    if (r < 0)
        return errno;
    /* Linux never hands a packet socket its own transmissions; Solaris
     * hands them to promiscuous streams, the sender's included */
    if (s->promisc_sap || s->promisc_phys)
        (void)enqueue_frame(s, f, len);
    return 0;
}

ssize_t hb_shim_write(int fd, const void *buf, size_t n)
{
    pthread_mutex_lock(&shim_lock);
    struct shim_stream *s = find(fd);
    if (s == NULL) {
        pthread_mutex_unlock(&shim_lock);
        return write(fd, buf, n);
    }
    int err = 0;
    if (s->state != DL_IDLE || !s->raw)
        err = EPROTO; /* M_DATA needs raw mode on a bound stream */
    else if (n < ETH_HLEN)
        err = EINVAL;
    else if (n > ETH_HLEN + (size_t)s->mtu)
        err = ERANGE;
    else
        err = send_frame(s, buf, n);
    pthread_mutex_unlock(&shim_lock);
    if (err != 0) {
        errno = err;
        return -1;
    }
    return (ssize_t)n;
}

/* ---- DLPI requests ---- */

#define NEED(type, len)                                                    \
    do {                                                                   \
        if ((len) < (int)sizeof(type)) {                                   \
            error_ack(s, prim, DL_BADPRIM, 0);                             \
            return 0;                                                      \
        }                                                                  \
    } while (0)

/* An address inside the control part: pointer or NULL */
static const uint8_t *ctl_addr(const uint8_t *c, int clen, t_uscalar_t off,
                               t_uscalar_t len)
{
    if (off > (t_uscalar_t)clen || len > (t_uscalar_t)clen - off)
        return NULL;
    return c + off;
}

static int sock_bind(struct shim_stream *s, uint16_t proto)
{
    struct sockaddr_ll sll;
    memset(&sll, 0, sizeof sll);
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(proto);
    sll.sll_ifindex = s->ifindex;
    return bind(s->fd, (struct sockaddr *)&sll, sizeof sll) < 0 ? errno : 0;
}

static int membership(struct shim_stream *s, int add, int type, const uint8_t *addr)
{
    struct packet_mreq mr;
    memset(&mr, 0, sizeof mr);
    mr.mr_ifindex = s->ifindex;
    mr.mr_type = (unsigned short)type;
    if (addr != NULL) {
        mr.mr_alen = ETH_ALEN;
        memcpy(mr.mr_address, addr, ETH_ALEN);
    }
    return setsockopt(s->fd, SOL_PACKET,
                      add ? PACKET_ADD_MEMBERSHIP : PACKET_DROP_MEMBERSHIP, &mr,
                      sizeof mr) < 0
               ? errno
               : 0;
}

/* One M_PROTO/M_PCPROTO message down the stream: an acknowledgement is
 * queued; returns 0, or an errno for putmsg itself to fail with. */
static int dlpi_request(struct shim_stream *s, const uint8_t *c, int clen,
                        const struct strbuf *data)
{
    t_uscalar_t prim;
    if (clen < (int)sizeof prim)
        return EINVAL;
    memcpy(&prim, c, sizeof prim);
    union DL_primitives p;
    memset(&p, 0, sizeof p);
    memcpy(&p, c, (size_t)clen < sizeof p ? (size_t)clen : sizeof p);
    int err;

    switch (prim) {
    case DL_INFO_REQ:
        info_ack(s);
        return 0;

    case DL_ATTACH_REQ: {
        NEED(dl_attach_req_t, clen);
        if (s->style != 2 || s->state != DL_UNATTACHED) {
            error_ack(s, prim, DL_OUTSTATE, 0);
            return 0;
        }
        char name[IFNAMSIZ + 16];
        snprintf(name, sizeof name, "%s%u", s->drv, (unsigned)p.attach_req.dl_ppa);
        err = attach(s, name);
        if (err == ENOENT)
            error_ack(s, prim, DL_BADPPA, 0);
        else if (err != 0)
            error_ack(s, prim, DL_SYSERR, err);
        else
            ok_ack(s, prim);
        return 0;
    }

    case DL_DETACH_REQ:
        if (s->style != 2 || s->state != DL_UNBOUND) {
            error_ack(s, prim, DL_OUTSTATE, 0);
            return 0;
        }
        s->state = DL_UNATTACHED;
        s->ifindex = 0;
        ok_ack(s, prim);
        return 0;

    case DL_BIND_REQ: {
        NEED(dl_bind_req_t, clen);
        if (s->state != DL_UNBOUND) {
            error_ack(s, prim, DL_OUTSTATE, 0);
            return 0;
        }
        if (p.bind_req.dl_service_mode != DL_CLDLS) {
            error_ack(s, prim, DL_UNSUPPORTED, 0);
            return 0;
        }
        if (p.bind_req.dl_sap > 0xffff) {
            error_ack(s, prim, DL_BADSAP, 0);
            return 0;
        }
        err = sock_bind(s, ETH_P_ALL);
        if (err != 0) {
            error_ack(s, prim, DL_SYSERR, err);
            return 0;
        }
        s->sap = p.bind_req.dl_sap;
        s->state = DL_IDLE;
        union {
            dl_bind_ack_t a;
            uint8_t b[sizeof(dl_bind_ack_t) + SHIM_ADDR_LEN];
        } u;
        memset(&u, 0, sizeof u);
        u.a.dl_primitive = DL_BIND_ACK;
        u.a.dl_sap = s->sap;
        u.a.dl_addr_length = SHIM_ADDR_LEN;
        u.a.dl_addr_offset = sizeof u.a;
        dlsap(u.b + sizeof u.a, s->mac, (uint16_t)s->sap);
        ack(s, &u, sizeof u);
        return 0;
    }

    case DL_UNBIND_REQ:
        if (s->state != DL_IDLE) {
            error_ack(s, prim, DL_OUTSTATE, 0);
            return 0;
        }
        (void)sock_bind(s, 0); /* protocol 0: nothing more is received */
        queue_flush(s);
        s->state = DL_UNBOUND;
        ok_ack(s, prim);
        return 0;

    case DL_PROMISCON_REQ:
    case DL_PROMISCOFF_REQ: {
        NEED(dl_promiscon_req_t, clen);
        int on = prim == DL_PROMISCON_REQ;
        int *flag;
        if (s->state == DL_UNATTACHED) {
            error_ack(s, prim, DL_OUTSTATE, 0);
            return 0;
        }
        switch (p.promiscon_req.dl_level) {
        case DL_PROMISC_SAP: flag = &s->promisc_sap; break;
        case DL_PROMISC_MULTI: flag = &s->promisc_multi; break;
        case DL_PROMISC_PHYS: flag = &s->promisc_phys; break;
        default:
            error_ack(s, prim, DL_NOTSUPPORTED, 0);
            return 0;
        }
        if (!on && !*flag) {
            error_ack(s, prim, DL_NOTENAB, 0);
            return 0;
        }
        if (p.promiscon_req.dl_level == DL_PROMISC_PHYS && on != *flag) {
            err = membership(s, on, PACKET_MR_PROMISC, NULL);
            if (err != 0) {
                error_ack(s, prim, DL_SYSERR, err);
                return 0;
            }
        }
        *flag = on;
        ok_ack(s, prim);
        return 0;
    }

    case DL_ENABMULTI_REQ:
    case DL_DISABMULTI_REQ: {
        NEED(dl_enabmulti_req_t, clen);
        if (s->state == DL_UNATTACHED) {
            error_ack(s, prim, DL_OUTSTATE, 0);
            return 0;
        }
        const uint8_t *a = ctl_addr(c, clen, p.enabmulti_req.dl_addr_offset,
                                    p.enabmulti_req.dl_addr_length);
        if (a == NULL || p.enabmulti_req.dl_addr_length != ETH_ALEN || !(a[0] & 1)) {
            error_ack(s, prim, DL_BADADDR, 0);
            return 0;
        }
        int i = 0;
        while (i < s->nmulti && memcmp(s->multi[i], a, ETH_ALEN) != 0)
            i++;
        if (prim == DL_ENABMULTI_REQ) {
            if (i == s->nmulti) {
                if (s->nmulti == SHIM_MAX_MULTI) {
                    error_ack(s, prim, DL_TOOMANY, 0);
                    return 0;
                }
                err = membership(s, 1, PACKET_MR_MULTICAST, a);
                if (err != 0) {
                    error_ack(s, prim, DL_SYSERR, err);
                    return 0;
                }
                memcpy(s->multi[s->nmulti++], a, ETH_ALEN);
            }
        } else {
            if (i == s->nmulti) {
                error_ack(s, prim, DL_NOTENAB, 0);
                return 0;
            }
            (void)membership(s, 0, PACKET_MR_MULTICAST, a);
            memmove(s->multi[i], s->multi[i + 1], (size_t)(s->nmulti - i - 1) * ETH_ALEN);
            s->nmulti--;
        }
        ok_ack(s, prim);
        return 0;
    }

    case DL_PHYS_ADDR_REQ: {
        NEED(dl_phys_addr_req_t, clen);
        if (s->state == DL_UNATTACHED) {
            error_ack(s, prim, DL_OUTSTATE, 0);
            return 0;
        }
        if (p.physaddr_req.dl_addr_type != DL_CURR_PHYS_ADDR &&
            p.physaddr_req.dl_addr_type != DL_FACT_PHYS_ADDR) {
            error_ack(s, prim, DL_UNSUPPORTED, 0);
            return 0;
        }
        union {
            dl_phys_addr_ack_t a;
            uint8_t b[sizeof(dl_phys_addr_ack_t) + ETH_ALEN];
        } u;
        memset(&u, 0, sizeof u);
        u.a.dl_primitive = DL_PHYS_ADDR_ACK;
        u.a.dl_addr_length = ETH_ALEN;
        u.a.dl_addr_offset = sizeof u.a;
        memcpy(u.b + sizeof u.a, s->mac, ETH_ALEN);
        ack(s, &u, sizeof u);
        return 0;
    }

    case DL_UNITDATA_REQ: {
        /* Solaris answers a bad DL_UNITDATA_REQ with DL_UDERROR_IND or an
         * M_ERROR later; the shim fails the putmsg instead */
        if (clen < (int)sizeof(dl_unitdata_req_t))
            return EINVAL;
        if (s->state != DL_IDLE)
            return EPROTO;
        const uint8_t *a = ctl_addr(c, clen, p.unitdata_req.dl_dest_addr_offset,
                                    p.unitdata_req.dl_dest_addr_length);
        if (a == NULL || p.unitdata_req.dl_dest_addr_length != SHIM_ADDR_LEN)
            return EINVAL;
        size_t plen = data != NULL && data->len > 0 ? (size_t)data->len : 0;
        if (plen > (size_t)s->mtu)
            return ERANGE;
        uint16_t sap;
        memcpy(&sap, a + ETH_ALEN, sizeof sap);
        uint8_t *f = malloc(ETH_HLEN + plen);
        if (f == NULL)
            return ENOMEM;
        memcpy(f, a, ETH_ALEN);
        memcpy(f + ETH_ALEN, s->mac, ETH_ALEN);
        f[12] = (uint8_t)(sap >> 8);
        f[13] = (uint8_t)sap;
        if (plen > 0)
            memcpy(f + ETH_HLEN, data->buf, plen);
        err = send_frame(s, f, ETH_HLEN + plen);
        free(f);
        return err;
    }

    default:
        error_ack(s, prim, DL_BADPRIM, 0);
        return 0;
    }
}

int hb_shim_putmsg(int fd, const struct strbuf *ctl, const struct strbuf *data,
                   int flags)
{
    pthread_mutex_lock(&shim_lock);
    struct shim_stream *s = find(fd);
    int err;
    if (s == NULL) {
        err = fcntl(fd, F_GETFD) < 0 ? EBADF : ENOSTR;
    } else if (ctl != NULL && ctl->len >= 0) {
        err = dlpi_request(s, (const uint8_t *)ctl->buf, ctl->len, data);
    } else if (flags & RS_HIPRI) {
        err = EINVAL; /* a high-priority message needs a control part */
    } else if (data != NULL && data->len >= 0) {
        /* M_DATA: a whole frame in raw mode */
        if (s->state != DL_IDLE || !s->raw)
            err = EPROTO;
        else if (data->len < ETH_HLEN)
            err = EINVAL;
        else if (data->len > ETH_HLEN + s->mtu)
            err = ERANGE;
        else
            err = send_frame(s, (const uint8_t *)data->buf, (size_t)data->len);
    } else {
        err = 0; /* nothing to send */
    }
    pthread_mutex_unlock(&shim_lock);
    if (err != 0) {
        errno = err;
        return -1;
    }
    return 0;
}

int hb_shim_ioctl(int fd, unsigned long req, ...)
{
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);

    pthread_mutex_lock(&shim_lock);
    struct shim_stream *s = find(fd);
    if (s == NULL) {
        pthread_mutex_unlock(&shim_lock);
        return ioctl(fd, req, arg);
    }
    int err = 0;
    if (req == I_STR) {
        struct strioctl *sio = arg;
        if (sio == NULL)
            err = EFAULT;
        else if (sio->ic_cmd == DLIOCRAW && !env_flag("HEART_SHIM_DLPI_NORAW")) {
            s->raw = 1;
            sio->ic_len = 0;
        } else {
            err = EINVAL; /* the driver answers M_IOCNAK */
        }
    } else if (req == I_FLUSH) {
        queue_flush(s);
        int pk = 0, vl = 0;
        while (recv_frame(s, 0, &pk, &vl) > 0)
            ;
    } else {
        err = EINVAL;
    }
    pthread_mutex_unlock(&shim_lock);
    if (err != 0) {
        errno = err;
        return -1;
    }
    return 0;
}

/* poll(2), with the readiness of emulated streams taken from their queue
 * (high priority: POLLPRI; normal: POLLIN | POLLRDNORM) and from the next
 * frame in the socket the stream would get. */
int hb_shim_poll(struct pollfd *fds, nfds_t n, int timeout)
{
    enum { MAXFDS = 64 };
    struct pollfd tmp[MAXFDS];
    short sready[MAXFDS];
    if (n > MAXFDS)
        return poll(fds, n, timeout);
    uint64_t deadline = timeout < 0 ? UINT64_MAX : now_ns() + (uint64_t)timeout * 1000000ull;
    for (;;) {
        int any_stream = 0;
        pthread_mutex_lock(&shim_lock);
        for (nfds_t i = 0; i < n; i++) {
            struct shim_stream *s = find(fds[i].fd);
            tmp[i] = fds[i];
            sready[i] = -1;
            if (s == NULL)
                continue;
            any_stream = 1;
            short ev = 0;
            if (s->head != NULL)
                ev = s->head->hipri ? POLLPRI : (POLLIN | POLLRDNORM);
            else if (peek_deliverable(s) > 0)
                ev = POLLIN | POLLRDNORM;
            sready[i] = ev & fds[i].events;
            tmp[i].events = 0; /* the socket itself: errors only */
        }
        pthread_mutex_unlock(&shim_lock);
        if (!any_stream)
            return poll(fds, n, timeout);
        int r = poll(tmp, n, 0);
        if (r < 0)
            return r;
        int count = 0;
        for (nfds_t i = 0; i < n; i++) {
            fds[i].revents = tmp[i].revents;
            if (sready[i] > 0)
                fds[i].revents |= sready[i];
            if (fds[i].revents != 0)
                count++;
        }
        uint64_t now = now_ns();
        if (count > 0 || now >= deadline)
            return count;
        /* wait for anything, the streams' sockets included */
        for (nfds_t i = 0; i < n; i++)
            if (sready[i] >= 0)
                tmp[i].events = POLLIN;
        uint64_t left = deadline == UINT64_MAX ? 0 : (deadline - now + 999999) / 1000000;
        r = poll(tmp, n, deadline == UINT64_MAX ? -1 : (int)(left > 60000 ? 60000 : left));
        if (r < 0)
            return r;
    }
}
