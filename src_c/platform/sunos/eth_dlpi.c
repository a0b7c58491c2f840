/*
 * eth_dlpi.c - raw Ethernet frames on Solaris 10, 11 and illumos through the
 * raw STREAMS Data Link Provider Interface (dlpi(4P) / dlpi(7P), DLPI
 * Version 2): putmsg(2) a DL_* request, getmsg(2) its acknowledgement.
 *
 * libdlpi(3LIB) (dlpi_open, dlpi_bind, dlpi_promiscon, dlpi_send,
 * dlpi_recv, dlpi_get_physaddr) is the alternative on Solaris 11 and
 * illumos and does the same handshake; the raw interface is used because
 * it also works on every Solaris 10 update and needs no extra library.
 *
 * The handshake of hb_eth_open:
 *   if_nametoindex       unknown name: -ENODEV before any privilege is needed
 *   open /dev/net/<if>   a style 1 node (Solaris 11, illumos: every datalink,
 *                        VNICs included); if it does not exist, /dev/<driver>
 *                        (style 2, Solaris 10: "e1000g0" is /dev/e1000g, PPA 0)
 *   DL_INFO_REQ          DL_INFO_ACK: the provider style, then (after
 *   [DL_ATTACH_REQ ppa]  attaching a style 2 stream, asked again) the MAC
 *                        type (DL_ETHER, DL_CSMACD), SAP and address lengths
 *   DL_BIND_REQ 0x0806   connectionless (DL_CLDLS)
 *   DL_PROMISCON_REQ     DL_PROMISC_SAP: every SAP for this station, so
 *                        ARP and IPv6 both arrive on the one stream
 *   DL_ENABMULTI_REQ     33:33:00:00:00:01 (IPv6 all-nodes), where
 *                        unsolicited neighbour advertisements go: a DLPI
 *                        stream receives only the multicast groups it
 *                        enabled, and promiscuous SAP mode does not change
 *                        that.  Enabling the one group is narrower than
 *                        DL_PROMISC_MULTI (every group the NIC hears), which
 *                        is the fallback should a provider refuse it.
 *   I_STR DLIOCRAW       raw mode: write() and read()/getmsg() carry whole
 *                        Ethernet frames (M_DATA); when a provider refuses
 *                        it (EINVAL, ENOTSUP), frames go out as
 *                        DL_UNITDATA_REQ and come in as DL_UNITDATA_IND
 *   DL_PHYS_ADDR_REQ     the current MAC (DL_CURR_PHYS_ADDR)
 *   O_NONBLOCK           for hb_eth_recv / hb_eth_send
 *
 * Promiscuous SAP mode also loops back the frames this host sends (Solaris
 * hands transmitted frames to promiscuous streams), so hb_eth_recv drops
 * every frame whose source is our MAC, and everything that is neither ARP
 * nor an ICMPv6 neighbour advertisement (there is no kernel filter here; the
 * core re-checks every frame anyway).  A stream on the physical link gets
 * no VLAN-tagged frames (those go to streams of the VLAN link).
 */
#include "platform.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stropts.h>
#include <sys/dlpi.h>
#include <sys/types.h>
#include <unistd.h>

/* Solaris interface names may be longer than IFNAMSIZ (LIFNAMSIZ, 32) */
#ifdef LIFNAMSIZ
#define HB_DL_NAMSIZ LIFNAMSIZ
#else
#define HB_DL_NAMSIZ IFNAMSIZ
#endif

#define HB_DL_ACK_WAIT_NS 2000000000ull /* 2 s for each acknowledgement */
#define HB_DL_CTL_WORDS 256             /* 1 KiB of control part */
#define HB_DL_DATA_MAX 65536            /* no frame is longer */

/* A control part, aligned for the DLPI structures */
typedef union {
    t_uscalar_t prim;
    dl_info_ack_t info_ack;
    dl_ok_ack_t ok_ack;
    dl_error_ack_t error_ack;
    dl_phys_addr_ack_t physaddr_ack;
    dl_unitdata_ind_t unitdata_ind;
    t_uscalar_t words[HB_DL_CTL_WORDS];
} hb_dlctl;

struct hb_eth {
    int fd;
    int ifindex;
    int raw;              /* DLIOCRAW is on */
    t_scalar_t sap_len;   /* dl_sap_length: < 0 the SAP follows the MAC */
    t_uscalar_t addr_len; /* dl_addr_length: MAC + SAP */
    uint8_t mac[HB_ETH_ALEN];
    /* receive buffers (one receiving thread at a time) */
    hb_dlctl rctl;
    /* HB_ETH_HLEN of room first: a DL_UNITDATA_IND's payload lands after
     * it and the rebuilt Ethernet header goes in front */
    uint8_t rbuf[HB_ETH_HLEN + HB_DL_DATA_MAX];
};

static _Thread_local char failed_buf[128]; /* hb_eth_open_failed_call()'s text */

static const char *dl_prim_name(t_uscalar_t p)
{
    switch (p) {
    case DL_INFO_REQ: return "DL_INFO_REQ";
    case DL_INFO_ACK: return "DL_INFO_ACK";
    case DL_ATTACH_REQ: return "DL_ATTACH_REQ";
    case DL_DETACH_REQ: return "DL_DETACH_REQ";
    case DL_BIND_REQ: return "DL_BIND_REQ";
    case DL_BIND_ACK: return "DL_BIND_ACK";
    case DL_UNBIND_REQ: return "DL_UNBIND_REQ";
    case DL_OK_ACK: return "DL_OK_ACK";
    case DL_ERROR_ACK: return "DL_ERROR_ACK";
    case DL_UNITDATA_REQ: return "DL_UNITDATA_REQ";
    case DL_UNITDATA_IND: return "DL_UNITDATA_IND";
    case DL_UDERROR_IND: return "DL_UDERROR_IND";
    case DL_ENABMULTI_REQ: return "DL_ENABMULTI_REQ";
    case DL_PROMISCON_REQ: return "DL_PROMISCON_REQ";
    case DL_PHYS_ADDR_REQ: return "DL_PHYS_ADDR_REQ";
    case DL_PHYS_ADDR_ACK: return "DL_PHYS_ADDR_ACK";
    default: return "DL_?";
    }
}

static const char *dl_err_name(t_uscalar_t e)
{
    switch (e) {
    case DL_BADSAP: return "DL_BADSAP";
    case DL_BADADDR: return "DL_BADADDR";
    case DL_ACCESS: return "DL_ACCESS";
    case DL_OUTSTATE: return "DL_OUTSTATE";
    case DL_SYSERR: return "DL_SYSERR";
    case DL_BADDATA: return "DL_BADDATA";
    case DL_UNSUPPORTED: return "DL_UNSUPPORTED";
    case DL_BADPPA: return "DL_BADPPA";
    case DL_BADPRIM: return "DL_BADPRIM";
    case DL_BOUND: return "DL_BOUND";
    case DL_INITFAILED: return "DL_INITFAILED";
    case DL_NOADDR: return "DL_NOADDR";
    case DL_NOTINIT: return "DL_NOTINIT";
    case DL_NOTSUPPORTED: return "DL_NOTSUPPORTED";
    case DL_TOOMANY: return "DL_TOOMANY";
    case DL_NOTENAB: return "DL_NOTENAB";
    case DL_BUSY: return "DL_BUSY";
    default: return "DL_ERROR_ACK";
    }
}

/* DL_ERROR_ACK -> errno */
static int dl_errno(const dl_error_ack_t *e)
{
    switch (e->dl_errno) {
    case DL_SYSERR:
        return e->dl_unix_errno != 0 ? (int)e->dl_unix_errno : EPROTO;
    case DL_BADPPA:
    case DL_NOTINIT:
        return ENODEV;
    case DL_ACCESS:
        return EPERM;
    case DL_NOTSUPPORTED:
    case DL_UNSUPPORTED:
        return ENOTSUP;
    case DL_BADADDR:
    case DL_BADSAP:
        return EINVAL;
    case DL_OUTSTATE:
    default:
        return EPROTO;
    }
}

/* Record the failed call (text copied: it may be built on the stack), close
 * and free what is open, return -err. */
static int fail(hb_eth *h, const char *call, int err)
{
    if (call != failed_buf) {
        snprintf(failed_buf, sizeof failed_buf, "%s", call);
    }
    hb_eth_set_failed_call(failed_buf);
    if (h != NULL) {
        if (h->fd >= 0)
            close(h->fd);
        free(h);
    }
    return -err;
}

static int failf_prim(hb_eth *h, t_uscalar_t req, const char *what, int err)
{
    snprintf(failed_buf, sizeof failed_buf, "%s (%s)", dl_prim_name(req), what);
    return fail(h, failed_buf, err);
}

/* putmsg a control-only request; -errno */
static int dl_request(hb_eth *h, const void *req, size_t len)
{
    struct strbuf ctl;

    ctl.maxlen = 0;
    ctl.len = (int)len;
    ctl.buf = (char *)(uintptr_t)req;
    for (;;) {
        if (putmsg(h->fd, &ctl, NULL, 0) == 0)
            return 0;
        if (errno != EINTR)
            return -errno;
    }
}

/* Read the rest of a message getmsg left partly unread (MORECTL,
 * MOREDATA): it is dropped. */
static void dl_drain(hb_eth *h, int more)
{
    char scratch[512];
    struct strbuf ctl, data;
    int flags;

    while (more > 0) {
        ctl.maxlen = sizeof scratch;
        ctl.len = 0;
        ctl.buf = scratch;
        data.maxlen = sizeof scratch;
        data.len = 0;
        data.buf = scratch;
        flags = 0;
        more = getmsg(h->fd, &ctl, &data, &flags);
        if (more < 0 && errno == EINTR)
            more = 1;
    }
}

/* Read one message into h->rctl (control part; *clen = -1 when it has
 * none, an M_DATA frame) and h->rbuf + HB_ETH_HLEN (*dlen bytes).  A
 * message longer than the buffers is cut.  0, -EAGAIN (non-blocking and
 * nothing there), -ENXIO (the stream was hung up: getmsg reports an empty
 * control part and no data from then on) or -errno. */
static int dl_getmsg(hb_eth *h, int *clen, int *dlen)
{
    struct strbuf ctl, data;

    for (;;) {
        ctl.maxlen = (int)sizeof h->rctl;
        ctl.len = 0;
        ctl.buf = (char *)&h->rctl;
        data.maxlen = HB_DL_DATA_MAX;
        data.len = 0;
        data.buf = (char *)h->rbuf + HB_ETH_HLEN;
        int flags = 0;
        int r = getmsg(h->fd, &ctl, &data, &flags);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        }
        if (r > 0)
            dl_drain(h, r);
        if (ctl.len == 0 && data.len == 0)
            return -ENXIO;
        *clen = ctl.len;
        *dlen = data.len > 0 ? data.len : 0;
        return 0;
    }
}

/* dl_getmsg, waiting until deadline_ns at most (the stream is still
 * blocking here, so getmsg is called only once poll says something is
 * there).  0, -ETIMEDOUT or dl_getmsg's -errno. */
static int dl_getmsg_wait(hb_eth *h, uint64_t deadline_ns, int *clen, int *dlen)
{
    for (;;) {
        uint64_t now = hb_now_ns();
        if (now >= deadline_ns)
            return -ETIMEDOUT;
        uint64_t ms = (deadline_ns - now + 999999) / 1000000;
        struct pollfd p;
        p.fd = h->fd;
        /* acknowledgements are high-priority messages (M_PCPROTO):
         * POLLPRI on a stream, not POLLIN */
        p.events = POLLIN | POLLPRI | POLLRDNORM | POLLRDBAND;
        p.revents = 0;
        int r = poll(&p, 1, (int)ms);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            continue; /* the deadline check above ends it */
        r = dl_getmsg(h, clen, dlen);
        if (r != -EAGAIN)
            return r; /* 0, or e.g. an M_ERROR from the driver */
    }
}

/* Wait for the acknowledgement of req: ack (DL_OK_ACK for req, or the
 * primitive named) of at least min_len bytes, into h->rctl.  Frames that
 * arrive meanwhile are skipped.  0; 1 for a DL_ERROR_ACK when refusal_ok
 * (the stream stays open); or fail()'s -errno with the stream closed and h
 * freed. */
static int dl_await(hb_eth *h, t_uscalar_t req, t_uscalar_t ack, size_t min_len,
                    int refusal_ok)
{
    uint64_t deadline = hb_now_ns() + HB_DL_ACK_WAIT_NS;

    for (;;) {
        int clen = -1, dlen = 0;
        int rc = dl_getmsg_wait(h, deadline, &clen, &dlen);
        if (rc == -ETIMEDOUT)
            return failf_prim(h, req, "no acknowledgement within 2 s", ETIMEDOUT);
        if (rc < 0)
            return failf_prim(h, req, "getmsg", -rc);
        if (clen < (int)sizeof(t_uscalar_t))
            continue; /* M_DATA: a frame */
        t_uscalar_t prim = h->rctl.prim;
        if (prim == DL_UNITDATA_IND || prim == DL_UDERROR_IND)
            continue; /* traffic, not for us now */
        if (prim == DL_ERROR_ACK) {
            if (refusal_ok)
                return 1;
            if ((size_t)clen < DL_ERROR_ACK_SIZE)
                return failf_prim(h, req, "short DL_ERROR_ACK", EPROTO);
            const dl_error_ack_t *e = &h->rctl.error_ack;
            return failf_prim(h, req, dl_err_name(e->dl_errno), dl_errno(e));
        }
        if (prim != ack)
            return failf_prim(h, req, dl_prim_name(prim), EPROTO);
        if ((size_t)clen < min_len)
            return failf_prim(h, req, "short acknowledgement", EPROTO);
        if (ack == DL_OK_ACK && h->rctl.ok_ack.dl_correct_primitive != req)
            return failf_prim(h, req, "DL_OK_ACK for another primitive", EPROTO);
        return 0;
    }
}

/* putmsg the request req (len bytes) and wait for its acknowledgement ack
 * (see dl_await), which is left in h->rctl. */
static int dl_call(hb_eth *h, const void *req, size_t len, t_uscalar_t ack,
                   size_t min_len, int refusal_ok)
{
    t_uscalar_t prim;
    memcpy(&prim, req, sizeof prim);
    int rc = dl_request(h, req, len);
    if (rc < 0)
        return failf_prim(h, prim, "putmsg", -rc);
    return dl_await(h, prim, ack, min_len, refusal_ok);
}

/* A small request answered by DL_OK_ACK */
static int dl_ok(hb_eth *h, const void *req, size_t len)
{
    return dl_call(h, req, len, DL_OK_ACK, DL_OK_ACK_SIZE, 0);
}

static int dl_info(hb_eth *h, dl_info_ack_t *info)
{
    dl_info_req_t req;

    memset(&req, 0, sizeof req);
    req.dl_primitive = DL_INFO_REQ;
    int rc = dl_call(h, &req, sizeof req, DL_INFO_ACK, DL_INFO_ACK_SIZE, 0);
    if (rc < 0)
        return rc;
    *info = h->rctl.info_ack;
    return 0;
}

/* "e1000g0" -> "e1000g", 0.  0, or -1 when the name ends in no digits. */
static int split_ppa(const char *ifname, char *drv, size_t drvcap,
                     t_uscalar_t *ppa)
{
    size_t n = strlen(ifname);
    size_t i = n;
    while (i > 0 && ifname[i - 1] >= '0' && ifname[i - 1] <= '9')
        i--;
    if (i == n || i == 0 || n - i > 9 || i >= drvcap)
        return -1;
    if (n - i > 1 && ifname[i] == '0')
        return -1; /* "e1000g01" is no PPA: not PPA 1 */
    memcpy(drv, ifname, i);
    drv[i] = '\0';
    unsigned long v = strtoul(ifname + i, NULL, 10);
    *ppa = (t_uscalar_t)v;
    return 0;
}

int hb_eth_open(const char *ifname, hb_eth **out)
{
    char path[HB_DL_NAMSIZ + 16];
    char drv[HB_DL_NAMSIZ];
    t_uscalar_t ppa = 0;
    int have_ppa;
    dl_info_ack_t info;
    int rc;

    unsigned ifindex;
    rc = hb_eth_lookup(ifname, out, HB_DL_NAMSIZ, &ifindex);
    if (rc < 0)
        return rc;
    if (strchr(ifname, '/') != NULL) /* it would name another device node */
        return fail(NULL, "if_nametoindex", ENODEV);
    have_ppa = split_ppa(ifname, drv, sizeof drv, &ppa) == 0;

    hb_eth *h = calloc(1, sizeof *h);
    if (h == NULL)
        return fail(NULL, "calloc", ENOMEM);
    h->fd = -1;
    h->ifindex = (int)ifindex;

    /* style 1: /dev/net/<link> (Solaris 11, illumos) */
    snprintf(path, sizeof path, "/dev/net/%s", ifname);
    h->fd = open(path, O_RDWR);
    if (h->fd < 0 && (errno == ENOENT || errno == ENXIO) && have_ppa) {
        /* style 2: /dev/<driver> + PPA (Solaris 10) */
        snprintf(path, sizeof path, "/dev/%s", drv);
        h->fd = open(path, O_RDWR);
    }
    if (h->fd < 0) {
        int err = errno;
        char call[sizeof path + 8];
        snprintf(call, sizeof call, "open(%s)", path);
        if (err == EACCES || err == EPERM)
            err = EPERM; /* no net_rawaccess privilege */
        else if (err == ENOENT || err == ENXIO)
            err = ENOTSUP; /* an IP interface with no datalink (lo0, ipmp) */
        return fail(h, call, err);
    }
    if (fcntl(h->fd, F_SETFD, FD_CLOEXEC) < 0)
        return fail(h, "fcntl(F_SETFD)", errno);

    rc = dl_info(h, &info);
    if (rc < 0)
        return rc;
    if (info.dl_provider_style == DL_STYLE2) {
        dl_attach_req_t at;
        if (!have_ppa)
            return failf_prim(h, DL_ATTACH_REQ, "no PPA in the name", ENOTSUP);
        memset(&at, 0, sizeof at);
        at.dl_primitive = DL_ATTACH_REQ;
        at.dl_ppa = ppa;
        rc = dl_ok(h, &at, sizeof at);
        if (rc < 0)
            return rc;
        /* the MAC type and lengths of the attached PPA */
        rc = dl_info(h, &info);
        if (rc < 0)
            return rc;
    }
    if (info.dl_mac_type != DL_ETHER && info.dl_mac_type != DL_CSMACD)
        return failf_prim(h, DL_INFO_REQ, "dl_mac_type is not DL_ETHER", ENOTSUP);
    t_uscalar_t sap_abs = (t_uscalar_t)(info.dl_sap_length < 0
                                            ? -info.dl_sap_length
                                            : info.dl_sap_length);
    if (sap_abs != 2 || info.dl_addr_length != HB_ETH_ALEN + 2)
        return failf_prim(h, DL_INFO_REQ, "not 6-byte MAC + 2-byte SAP addresses",
                          ENOTSUP);
    h->sap_len = info.dl_sap_length;
    h->addr_len = info.dl_addr_length;

    dl_bind_req_t bind;
    memset(&bind, 0, sizeof bind);
    bind.dl_primitive = DL_BIND_REQ;
    bind.dl_sap = HB_ETHERTYPE_ARP; /* the rest comes through promiscuous SAP */
    bind.dl_service_mode = DL_CLDLS;
    rc = dl_call(h, &bind, sizeof bind, DL_BIND_ACK, DL_BIND_ACK_SIZE, 0);
    if (rc < 0)
        return rc;

    dl_promiscon_req_t pr;
    memset(&pr, 0, sizeof pr);
    pr.dl_primitive = DL_PROMISCON_REQ;
    pr.dl_level = DL_PROMISC_SAP;
    rc = dl_ok(h, &pr, sizeof pr);
    if (rc < 0)
        return rc;

    /* IPv6 all-nodes, 33:33:00:00:00:01; DL_PROMISC_MULTI if refused */
    union {
        dl_enabmulti_req_t req;
        t_uscalar_t words[8];
    } em;
    static const uint8_t all_nodes[HB_ETH_ALEN] = {0x33, 0x33, 0, 0, 0, 1};
    memset(&em, 0, sizeof em);
    em.req.dl_primitive = DL_ENABMULTI_REQ;
    em.req.dl_addr_length = HB_ETH_ALEN;
    em.req.dl_addr_offset = sizeof em.req;
    memcpy((uint8_t *)&em + sizeof em.req, all_nodes, HB_ETH_ALEN);
    rc = dl_call(h, &em, sizeof em.req + HB_ETH_ALEN, DL_OK_ACK, DL_OK_ACK_SIZE, 1);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        pr.dl_level = DL_PROMISC_MULTI;
        rc = dl_ok(h, &pr, sizeof pr);
        if (rc < 0)
            return rc;
    }

    /* raw mode, or DL_UNITDATA_REQ / DL_UNITDATA_IND */
    struct strioctl sio;
    memset(&sio, 0, sizeof sio);
    sio.ic_cmd = DLIOCRAW;
    sio.ic_timout = 2;
    sio.ic_len = 0;
    sio.ic_dp = NULL;
    if (ioctl(h->fd, I_STR, &sio) == 0) {
        h->raw = 1;
    } else {
        int err = errno;
        if (err != EINVAL && err != ENOTSUP && err != EOPNOTSUPP && err != ENOTTY)
            return fail(h, "ioctl(I_STR, DLIOCRAW)", err);
    }

    dl_phys_addr_req_t pa;
    memset(&pa, 0, sizeof pa);
    pa.dl_primitive = DL_PHYS_ADDR_REQ;
    pa.dl_addr_type = DL_CURR_PHYS_ADDR;
    /* the acknowledgement stays in h->rctl; the offsets below are checked
     * against its size */
    rc = dl_call(h, &pa, sizeof pa, DL_PHYS_ADDR_ACK, DL_PHYS_ADDR_ACK_SIZE, 0);
    if (rc < 0)
        return rc;
    const dl_phys_addr_ack_t *ack = &h->rctl.physaddr_ack;
    if (ack->dl_addr_length != HB_ETH_ALEN ||
        ack->dl_addr_offset < DL_PHYS_ADDR_ACK_SIZE ||
        ack->dl_addr_offset > sizeof h->rctl - HB_ETH_ALEN)
        return failf_prim(h, DL_PHYS_ADDR_REQ, "not a 6-byte address", ENOTSUP);
    memcpy(h->mac, (const uint8_t *)&h->rctl + ack->dl_addr_offset, HB_ETH_ALEN);

    int fl = fcntl(h->fd, F_GETFL);
    if (fl < 0 || fcntl(h->fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return fail(h, "fcntl(F_SETFL, O_NONBLOCK)", errno);

    hb_eth_set_failed_call("");
    *out = h;
    return 0;
}

int hb_eth_send(hb_eth *h, const uint8_t *frame, size_t len)
{
    if (h == NULL || frame == NULL || len < HB_ETH_HLEN)
        return -EINVAL;
    if (len - HB_ETH_HLEN > HB_DL_DATA_MAX)
        return -EMSGSIZE;
    if (h->raw) {
        ssize_t r;
        do {
            r = write(h->fd, frame, len);
        } while (r < 0 && errno == EINTR);
        if (r < 0)
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        return (size_t)r == len ? 0 : -EIO;
    }

    /* DL_UNITDATA_REQ: the destination DLSAP address is MAC + SAP (in the
     * order dl_sap_length gives; the SAP as a native ushort, as Solaris'
     * drivers read it); the provider writes the Ethernet header, with the
     * interface's MAC as source (the core always puts ours there). */
    union {
        dl_unitdata_req_t req;
        t_uscalar_t words[16];
    } u;
    struct strbuf ctl, data;
    memset(&u, 0, sizeof u);
    u.req.dl_primitive = DL_UNITDATA_REQ;
    u.req.dl_dest_addr_length = h->addr_len;
    u.req.dl_dest_addr_offset = sizeof u.req;
    uint8_t *a = (uint8_t *)&u + sizeof u.req;
    uint16_t sap = hb_get_be16(frame + 12);
    if (h->sap_len < 0) {
        memcpy(a, frame, HB_ETH_ALEN);
        memcpy(a + HB_ETH_ALEN, &sap, sizeof sap);
    } else {
        memcpy(a, &sap, sizeof sap);
        memcpy(a + sizeof sap, frame, HB_ETH_ALEN);
    }
    ctl.maxlen = 0;
    ctl.len = (int)(sizeof u.req + h->addr_len);
    ctl.buf = (char *)&u;
    data.maxlen = 0;
    data.len = (int)(len - HB_ETH_HLEN);
    data.buf = (char *)(uintptr_t)(frame + HB_ETH_HLEN);
    for (;;) {
        if (putmsg(h->fd, &ctl, &data, 0) == 0)
            return 0;
        if (errno != EINTR)
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

/* ARP, or an ICMPv6 neighbour advertisement without extension headers */
static int wanted(const uint8_t *f, size_t len)
{
    if (len < HB_ETH_HLEN)
        return 0;
    unsigned type = hb_get_be16(f + 12);
    if (type == HB_ETHERTYPE_ARP)
        return 1;
    return type == HB_ETHERTYPE_IPV6 && len > 54 && f[20] == 58 && f[54] == 136;
}

/* A DLSAP address of a DL_UNITDATA_IND -> MAC and SAP; 0 or -1. */
static int dlsap_addr(const hb_eth *h, int clen, t_uscalar_t off, t_uscalar_t alen,
                      uint8_t mac[HB_ETH_ALEN], uint16_t *sap)
{
    if (alen != h->addr_len || off < DL_UNITDATA_IND_SIZE || off > (t_uscalar_t)clen ||
        alen > (t_uscalar_t)clen - off)
        return -1;
    const uint8_t *a = (const uint8_t *)&h->rctl + off;
    if (h->sap_len < 0) {
        memcpy(mac, a, HB_ETH_ALEN);
        memcpy(sap, a + HB_ETH_ALEN, sizeof *sap);
    } else {
        memcpy(sap, a, sizeof *sap);
        memcpy(mac, a + sizeof *sap, HB_ETH_ALEN);
    }
    return 0;
}

int hb_eth_recv(hb_eth *h, uint8_t *buf, size_t cap, size_t *len)
{
    if (h == NULL || buf == NULL || len == NULL)
        return -EINVAL;
    for (;;) {
        int clen = -1, dl = 0;
        int rc = dl_getmsg(h, &clen, &dl);
        if (rc < 0)
            return rc;
        size_t dlen = (size_t)dl;
        const uint8_t *f;
        size_t flen;
        if (clen < 0) {
            /* M_DATA: a whole frame (raw mode) */
            f = h->rbuf + HB_ETH_HLEN;
            flen = dlen;
        } else {
            if (clen < (int)DL_UNITDATA_IND_SIZE || h->rctl.prim != DL_UNITDATA_IND)
                continue; /* DL_UDERROR_IND, ...: nothing to deliver */
            const dl_unitdata_ind_t *ind = &h->rctl.unitdata_ind;
            uint8_t dst[HB_ETH_ALEN], src[HB_ETH_ALEN];
            uint16_t dsap, ssap;
            if (dlsap_addr(h, clen, ind->dl_dest_addr_offset,
                           ind->dl_dest_addr_length, dst, &dsap) < 0 ||
                dlsap_addr(h, clen, ind->dl_src_addr_offset,
                           ind->dl_src_addr_length, src, &ssap) < 0)
                continue;
            /* rebuild the Ethernet header in front of the payload */
            memcpy(h->rbuf, dst, HB_ETH_ALEN);
            memcpy(h->rbuf + HB_ETH_ALEN, src, HB_ETH_ALEN);
            hb_put_be16(h->rbuf + 12, ssap);
            f = h->rbuf;
            flen = HB_ETH_HLEN + dlen;
        }
        if (!wanted(f, flen))
            continue;
        if (memcmp(f + HB_ETH_ALEN, h->mac, HB_ETH_ALEN) == 0)
            continue; /* our own, looped back by promiscuous mode */
        size_t n = flen < cap ? flen : cap;
        memcpy(buf, f, n);
        *len = n;
        return 0;
    }
}

int hb_eth_fd(const hb_eth *h)
{
    return h != NULL ? h->fd : -EINVAL;
}

int hb_eth_hwaddr(const hb_eth *h, uint8_t mac[6])
{
    if (h == NULL || mac == NULL)
        return -EINVAL;
    memcpy(mac, h->mac, HB_ETH_ALEN);
    return 0;
}

int hb_eth_ifindex(const hb_eth *h)
{
    return h != NULL ? h->ifindex : -EINVAL;
}

void hb_eth_close(hb_eth *h)
{
    if (h == NULL)
        return;
    close(h->fd);
    free(h);
}
