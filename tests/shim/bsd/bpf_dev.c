/*
 * bpf_dev.c - the bpf(4) device on Linux: open("/dev/bpf") returns an
 * AF_PACKET SOCK_RAW socket (a real descriptor that poll and kqueue see
 * readable), remembered here as a bpf device; ioctl, read, write and close
 * on it behave as bpf(4) says.  Any other descriptor or path goes to the
 * real call.
 *
 *   BIOCSETIF       bind the socket to the interface (ETH_P_ALL); ENXIO
 *                   for a name Linux does not know
 *   BIOCGDLT        DLT_EN10MB for ARPHRD_ETHER, DLT_NULL for loopback,
 *                   DLT_RAW for anything else
 *   BIOCSETF        the program as a socket filter (lfilter.c), then flush
 *   BIOCSSEESENT, BIOCSDIRECTION, BIOCSDIRFILT   which directions pass
 *   BIOCSBLEN, BIOCGBLEN, BIOCIMMEDIATE, BIOCSHDRCMPLT   recorded
 *   read            exactly the buffer length: one or more records
 *                   (struct bpf_hdr, the frame, padding to BPF_WORDALIGN)
 *   write           the whole frame with sendto on the interface; the source
 *                   MAC filled in unless BIOCSHDRCMPLT
 *
 * /dev/bpf is the cloning device; /dev/bpf0../dev/bpf255 open once each
 * (EBUSY while open).  HEART_SHIM_BPF_NODIRECTION=1 makes BIOCSSEESENT,
 * BIOCSDIRECTION and BIOCSDIRFILT fail with EINVAL, as on a BPF without
 * them: the device then delivers the host's own frames too, and only the
 * backend's own-MAC check keeps them out.  HEART_SHIM_BPF_NOCLONE=1 makes /dev/bpf ENOENT, as on
 * a system with only numbered units.  Without CAP_NET_RAW the open fails
 * with EACCES, as the device node's permissions would make it.
 */
#include "shim_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/bpf.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>

#define BPF_MINBUFSIZE 32
#define BPF_MAXBUFSIZE 0x80000
#define BPF_DEFAULTBUFSIZE 4096

/* the bytes of struct bpf_hdr that count (SIZEOF_BPF_HDR on the BSDs) */
#define HDR_SIZE (offsetof(struct bpf_hdr, bh_hdrlen) + sizeof(unsigned short))
/* header length as the BSDs pad it: the network layer header aligned */
#define HDR_LEN (BPF_WORDALIGN(HDR_SIZE + ETH_HLEN) - ETH_HLEN)

struct dev {
    int unit;          /* /dev/bpfN; -1: a clone of /dev/bpf */
    int accmode;       /* O_RDONLY, O_WRONLY, O_RDWR */
    int bound;
    int ifindex;
    unsigned short hatype;
    uint8_t mac[ETH_ALEN];
    char ifname[IFNAMSIZ];
    unsigned blen;
    unsigned immediate, hdrcmplt;
    unsigned seesent, direction, dirfilt; /* as last set, for the getters */
    int want_in, want_out;
    struct hb_shim_insn *prog;
    unsigned nprog;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct dev *devs[HB_SHIM_MAX_FD];

/* The device behind fd, or NULL; with the lock held. */
static struct dev *lookup(int fd)
{
    return fd >= 0 && fd < HB_SHIM_MAX_FD ? devs[fd] : NULL;
}

static int bpf_unit(const char *path)
{
    static const char prefix[] = "/dev/bpf";
    if (strncmp(path, prefix, sizeof prefix - 1) != 0)
        return -2; /* not ours */
    const char *p = path + sizeof prefix - 1;
    if (*p == '\0')
        return -1; /* the cloning device */
    int unit = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9' || unit > 255)
            return -2;
        unit = unit * 10 + (*p - '0');
    }
    return unit <= 255 ? unit : -2;
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
    int unit = path != NULL ? bpf_unit(path) : -2;
    if (unit == -2)
        return open(path, flags, mode);
    if (unit == -1) {
        const char *noclone = getenv("HEART_SHIM_BPF_NOCLONE");
        if (noclone != NULL && noclone[0] == '1') {
            errno = ENOENT;
            return -1;
        }
    }

    pthread_mutex_lock(&lock);
    if (unit >= 0) {
        for (int fd = 0; fd < HB_SHIM_MAX_FD; fd++) {
            if (devs[fd] != NULL && devs[fd]->unit == unit) {
                pthread_mutex_unlock(&lock);
                errno = EBUSY;
                return -1;
            }
        }
    }
    struct dev *d = calloc(1, sizeof *d);
    if (d == NULL) {
        pthread_mutex_unlock(&lock);
        errno = ENOMEM;
        return -1;
    }
    /* protocol 0: nothing arrives before BIOCSETIF binds it */
    int fd = socket(AF_PACKET, SOCK_RAW | (flags & O_NONBLOCK ? SOCK_NONBLOCK : 0) |
                                   (flags & O_CLOEXEC ? SOCK_CLOEXEC : 0), 0);
    if (fd < 0) {
        int err = errno;
        pthread_mutex_unlock(&lock);
        free(d);
        errno = err == EPERM ? EACCES : err; /* the device node's answer */
        return -1;
    }
    if (fd >= HB_SHIM_MAX_FD) {
        pthread_mutex_unlock(&lock);
        close(fd);
        free(d);
        errno = EMFILE;
        return -1;
    }
    int on = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_TIMESTAMP, &on, sizeof on);
    (void)setsockopt(fd, SOL_PACKET, PACKET_AUXDATA, &on, sizeof on);
    d->unit = unit;
    d->accmode = flags & O_ACCMODE;
    d->blen = BPF_DEFAULTBUFSIZE;
    d->seesent = 1;
    d->direction = BPF_D_INOUT;
    d->want_in = d->want_out = 1;
    devs[fd] = d;
    pthread_mutex_unlock(&lock);
    return fd;
}

int hb_shim_close(int fd)
{
    pthread_mutex_lock(&lock);
    struct dev *d = lookup(fd);
    if (d != NULL)
        devs[fd] = NULL;
    pthread_mutex_unlock(&lock);
    if (d != NULL) {
        free(d->prog);
        free(d);
    }
    hb_shim_kq_forget(fd);
    return close(fd);
}

/* Discard what the socket holds (BIOCFLUSH, and after BIOCSETF). */
static void flush(int fd)
{
    char b[1];
    while (recv(fd, b, sizeof b, MSG_DONTWAIT | MSG_TRUNC) >= 0)
        ;
}

/* (Re)attach the program with the direction prefix; with the lock held. */
static int refilter(int fd, struct dev *d)
{
    if (hb_shim_attach_filter(fd, d->prog, d->nprog, d->want_in, d->want_out) < 0)
        return -1;
    flush(fd);
    return 0;
}

static int set_interface(int fd, struct dev *d, const struct ifreq *ifr)
{
    struct ifreq q;
    struct sockaddr_ll sll;
    memset(&q, 0, sizeof q);
    memcpy(q.ifr_name, ifr->ifr_name, IFNAMSIZ - 1);
    unsigned ifindex = if_nametoindex(q.ifr_name);
    if (ifindex == 0) {
        errno = ENXIO;
        return -1;
    }
    if (ioctl(fd, SIOCGIFHWADDR, &q) < 0)
        return -1;
    memset(&sll, 0, sizeof sll);
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = (int)ifindex;
    /* the filter first, so nothing unfiltered is queued after bind */
    if (refilter(fd, d) < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0)
        return -1;
    d->bound = 1;
    d->ifindex = (int)ifindex;
    d->hatype = q.ifr_hwaddr.sa_family;
    memcpy(d->mac, q.ifr_hwaddr.sa_data, ETH_ALEN);
    memcpy(d->ifname, q.ifr_name, IFNAMSIZ);
    return 0;
}

static int set_program(int fd, struct dev *d, const struct bpf_program *p)
{
    struct hb_shim_insn *prog = NULL;
    if (p->bf_len > BPF_MAXINSNS || (p->bf_len > 0 && p->bf_insns == NULL)) {
        errno = EINVAL;
        return -1;
    }
    if (p->bf_len > 0) {
        prog = calloc(p->bf_len, sizeof *prog);
        if (prog == NULL) {
            errno = ENOMEM;
            return -1;
        }
        for (unsigned i = 0; i < p->bf_len; i++) {
            prog[i].code = p->bf_insns[i].code;
            prog[i].jt = p->bf_insns[i].jt;
            prog[i].jf = p->bf_insns[i].jf;
            prog[i].k = p->bf_insns[i].k;
        }
    }
    struct hb_shim_insn *old = d->prog;
    unsigned nold = d->nprog;
    d->prog = prog;
    d->nprog = p->bf_len;
    if (refilter(fd, d) < 0) {
        int err = errno;
        d->prog = old;
        d->nprog = nold;
        free(prog);
        errno = err;
        return -1;
    }
    free(old);
    return 0;
}

/* want_in / want_out changed: attach again with the new prefix */
static int set_directions(int fd, struct dev *d, int in, int out)
{
    d->want_in = in;
    d->want_out = out;
    return refilter(fd, d);
}

static int dev_ioctl(int fd, struct dev *d, unsigned long request, void *arg)
{
    unsigned *u = arg;
    if (arg == NULL && request != BIOCFLUSH) {
        errno = EFAULT;
        return -1;
    }
    if ((request == BIOCSSEESENT || request == BIOCSDIRECTION || request == BIOCSDIRFILT) &&
        getenv("HEART_SHIM_BPF_NODIRECTION") != NULL) {
        errno = EINVAL; /* a BPF without direction control: it shows our own frames */
        return -1;
    }
    switch (request) {
    case BIOCSETIF:
        return set_interface(fd, d, arg);
    case BIOCGETIF:
        if (!d->bound) {
            errno = EINVAL;
            return -1;
        }
        memcpy(((struct ifreq *)arg)->ifr_name, d->ifname, IFNAMSIZ);
        return 0;
    case BIOCGDLT:
        if (!d->bound) {
            errno = EINVAL;
            return -1;
        }
        *u = d->hatype == ARPHRD_ETHER ? DLT_EN10MB
           : d->hatype == ARPHRD_LOOPBACK ? DLT_NULL : DLT_RAW;
        return 0;
    case BIOCSBLEN:
        if (d->bound) {
            errno = EINVAL; /* only before BIOCSETIF */
            return -1;
        }
        if (*u < BPF_MINBUFSIZE)
            *u = BPF_MINBUFSIZE;
        if (*u > BPF_MAXBUFSIZE)
            *u = BPF_MAXBUFSIZE;
        *u = (unsigned)BPF_WORDALIGN(*u);
        d->blen = *u;
        return 0;
    case BIOCGBLEN:
        *u = d->blen;
        return 0;
    case BIOCSETF:
        return set_program(fd, d, arg);
    case BIOCFLUSH:
        flush(fd);
        return 0;
    case BIOCIMMEDIATE:
        d->immediate = *u != 0;
        return 0;
    case BIOCSHDRCMPLT:
        d->hdrcmplt = *u != 0;
        return 0;
    case BIOCGHDRCMPLT:
        *u = d->hdrcmplt;
        return 0;
    case BIOCSSEESENT:
        d->seesent = *u != 0;
        return set_directions(fd, d, d->want_in, *u != 0);
    case BIOCGSEESENT:
        *u = d->seesent;
        return 0;
    case BIOCSDIRECTION:
        if (*u > BPF_D_OUT) {
            errno = EINVAL;
            return -1;
        }
        d->direction = *u;
        return set_directions(fd, d, *u != BPF_D_OUT, *u != BPF_D_IN);
    case BIOCGDIRECTION:
        *u = d->direction;
        return 0;
    case BIOCSDIRFILT:
        d->dirfilt = *u & (BPF_DIRECTION_IN | BPF_DIRECTION_OUT);
        return set_directions(fd, d, !(*u & BPF_DIRECTION_IN), !(*u & BPF_DIRECTION_OUT));
    case BIOCGDIRFILT:
        *u = d->dirfilt;
        return 0;
    default:
        if ((request & 0xffff0000ul) == 0x42500000ul) {
            errno = EINVAL; /* a BIOC* request the shim does not know */
            return -1;
        }
        return ioctl(fd, request, arg); /* FIONBIO, FIONREAD, ... */
    }
}

int hb_shim_ioctl(int fd, unsigned long request, ...)
{
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    pthread_mutex_lock(&lock);
    struct dev *d = lookup(fd);
    if (d == NULL) {
        pthread_mutex_unlock(&lock);
        return ioctl(fd, request, arg);
    }
    int rc = dev_ioctl(fd, d, request, arg);
    int err = errno;
    pthread_mutex_unlock(&lock);
    errno = err;
    return rc;
}

/* One frame off the socket into dst (room bytes): its length on the wire
 * (after the filter's cut) or -1; *skip when it is one BPF would not show;
 * *ts its timestamp, *wirelen its original length.  Peeks first, so that a
 * frame which does not fit stays for the next read (unless first). */
static ssize_t take(int fd, uint8_t *dst, size_t room, int first, int want_in,
                    int want_out, int *skip, struct timeval *ts, size_t *wirelen)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(struct tpacket_auxdata)) +
                 CMSG_SPACE(sizeof(struct timeval))];
    } control;
    struct sockaddr_ll from;
    struct iovec iov = {dst, room};
    struct msghdr msg;

    memset(&msg, 0, sizeof msg);
    msg.msg_name = &from;
    msg.msg_namelen = sizeof from;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;
    ssize_t len = recvmsg(fd, &msg, MSG_PEEK | MSG_TRUNC | (first ? 0 : MSG_DONTWAIT));
    if (len < 0)
        return -1;
    int outgoing = from.sll_pkttype == PACKET_OUTGOING;
    *skip = outgoing ? !want_out : !want_in;
    gettimeofday(ts, NULL);
    *wirelen = (size_t)len;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_PACKET && c->cmsg_type == PACKET_AUXDATA) {
            struct tpacket_auxdata aux;
            memcpy(&aux, CMSG_DATA(c), sizeof aux);
            *wirelen = aux.tp_len;
            if (aux.tp_status & TP_STATUS_VLAN_VALID)
                *skip = 1; /* the filter drops these; a backstop */
        } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMP) {
            memcpy(ts, CMSG_DATA(c), sizeof *ts);
        }
    }
    if (!*skip && (size_t)len > room && !first)
        return len; /* leave it queued */
    /* consume it (the same bytes again, or none for a skipped one) */
    char b[1];
    struct iovec iov2 = *skip ? (struct iovec){b, sizeof b} : iov;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov2;
    msg.msg_iovlen = 1;
    if (recvmsg(fd, &msg, MSG_DONTWAIT) < 0)
        return -1;
    return len;
}

ssize_t hb_shim_read(int fd, void *buf, size_t n)
{
    pthread_mutex_lock(&lock);
    struct dev *d = lookup(fd);
    if (d == NULL) {
        pthread_mutex_unlock(&lock);
        return read(fd, buf, n);
    }
    int bound = d->bound, want_in = d->want_in, want_out = d->want_out;
    int accmode = d->accmode;
    size_t blen = d->blen;
    pthread_mutex_unlock(&lock);
    if (!bound) {
        errno = ENXIO;
        return -1;
    }
    if (accmode == O_WRONLY) {
        errno = EBADF;
        return -1;
    }
    if (n != blen) {
        errno = EINVAL; /* bpf(4): the buffer must be exactly BIOCGBLEN */
        return -1;
    }
    uint8_t *out = buf;
    size_t off = 0, end = 0;
    while (off + HDR_LEN < n) {
        size_t room = n - off - HDR_LEN;
        struct timeval ts;
        size_t wirelen;
        int skip = 0;
        ssize_t len = take(fd, out + off + HDR_LEN, room, end == 0, want_in, want_out,
                           &skip, &ts, &wirelen);
        if (len < 0) {
            if (end > 0)
                break; /* what we have */
            return -1;
        }
        if (skip)
            continue;
        if ((size_t)len > room && end > 0)
            break; /* it stays for the next read */
        struct bpf_hdr bh;
        memset(&bh, 0, sizeof bh);
        bh.bh_tstamp = ts;
        bh.bh_caplen = (bpf_u_int32)((size_t)len < room ? (size_t)len : room);
        bh.bh_datalen = (bpf_u_int32)wirelen;
        bh.bh_hdrlen = (unsigned short)HDR_LEN;
        memcpy(out + off, &bh, HDR_SIZE);
        end = off + HDR_LEN + bh.bh_caplen;
        off = BPF_WORDALIGN(end);
    }
    return (ssize_t)end;
}

ssize_t hb_shim_write(int fd, const void *buf, size_t n)
{
    struct sockaddr_ll sll;
    pthread_mutex_lock(&lock);
    struct dev *d = lookup(fd);
    if (d == NULL) {
        pthread_mutex_unlock(&lock);
        return write(fd, buf, n);
    }
    int bound = d->bound, ifindex = d->ifindex, hdrcmplt = (int)d->hdrcmplt;
    int accmode = d->accmode;
    uint8_t mac[ETH_ALEN];
    memcpy(mac, d->mac, ETH_ALEN);
    pthread_mutex_unlock(&lock);
    if (!bound) {
        errno = ENXIO;
        return -1;
    }
    if (accmode == O_RDONLY) {
        errno = EBADF;
        return -1;
    }
    if (n < ETH_HLEN) {
        errno = EINVAL;
        return -1;
    }
    const uint8_t *frame = buf;
    uint8_t *copy = NULL;
    if (!hdrcmplt) {
        /* bpf(4) fills in the source address unless BIOCSHDRCMPLT */
        copy = malloc(n);
        if (copy == NULL) {
            errno = ENOMEM;
            return -1;
        }
        memcpy(copy, buf, n);
        memcpy(copy + ETH_ALEN, mac, ETH_ALEN);
        frame = copy;
    }
    memset(&sll, 0, sizeof sll);
    sll.sll_family = AF_PACKET;
    sll.sll_ifindex = ifindex;
    memcpy(&sll.sll_protocol, frame + 2 * ETH_ALEN, 2);
    sll.sll_halen = ETH_ALEN;
    memcpy(sll.sll_addr, frame, ETH_ALEN);
    ssize_t r = sendto(fd, frame, n, 0, (struct sockaddr *)&sll, sizeof sll);
    int err = errno;
    free(copy);
    errno = err;
    return r;
}
