/*
 * link.c - UDP links: unicast (to each peer's address), multicast (IPv4 or
 * IPv6 group) and broadcast (IPv4).  One socket per link, bound to the
 * link's port; every message is sealed once and the same bytes go out on
 * every link.
 */
#include "engine.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define HEARTBEAT_TOS 0xc0 /* CS6, network control: queued ahead of bulk */
#define RCVBUF_BYTES (4 << 20)

int hb_addr_parse(const char *host, uint16_t port, struct sockaddr_storage *ss,
                  socklen_t *len)
{
    struct addrinfo hints, *res = NULL;
    char serv[8];
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    snprintf(serv, sizeof serv, "%u", (unsigned)port);
    if (!host || getaddrinfo(host, serv, &hints, &res) != 0 || !res)
        return -EINVAL;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = (socklen_t)res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static const char *kind_name(int kind)
{
    switch (kind) {
    case HB_LINK_UNICAST:
        return "unicast";
    case HB_LINK_MULTICAST:
        return "multicast";
    case HB_LINK_BROADCAST:
        return "broadcast";
    }
    return "?";
}

static int sockopt(hb_engine *e, struct hb_link *l, int level, int name,
                   const void *val, socklen_t len, const char *what)
{
    if (setsockopt(l->fd, level, name, val, len) < 0) {
        int err = errno;
        const char *hint = "";
        if (err == EPERM || err == EACCES)
            hint = " (not permitted: needs CAP_NET_ADMIN or CAP_NET_RAW)";
        return hb_engine_fail(e, -err, "%s: setsockopt(%s): %s%s", l->desc,
                              what, strerror(err), hint);
    }
    return 0;
}

static int join_group(hb_engine *e, struct hb_link *l, const hb_link_config *lc,
                      const struct sockaddr_storage *bind_ss)
{
    unsigned ifindex = 0;
    int ttl = lc->ttl > 0 ? lc->ttl : 1;
    int loop = lc->loop ? 1 : 0;
    if (lc->ifname && *lc->ifname) {
        ifindex = if_nametoindex(lc->ifname);
        if (!ifindex)
            return hb_engine_fail(e, -ENODEV, "%s: interface %s: no such interface",
                                  l->desc, lc->ifname);
    }
    if (l->family == AF_INET) {
        struct ip_mreq mr;
        const struct sockaddr_in *g = (const struct sockaddr_in *)&l->dest;
        const struct sockaddr_in *b = (const struct sockaddr_in *)bind_ss;
        memset(&mr, 0, sizeof mr);
        mr.imr_multiaddr = g->sin_addr;
        mr.imr_interface = b->sin_addr;
        int rc = sockopt(e, l, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mr, sizeof mr,
                         "IP_ADD_MEMBERSHIP");
        if (rc < 0)
            return rc;
        if (b->sin_addr.s_addr != htonl(INADDR_ANY)) {
            rc = sockopt(e, l, IPPROTO_IP, IP_MULTICAST_IF, &b->sin_addr,
                         sizeof b->sin_addr, "IP_MULTICAST_IF");
            if (rc < 0)
                return rc;
        }
        unsigned char t = (unsigned char)ttl, lp = (unsigned char)loop;
        rc = sockopt(e, l, IPPROTO_IP, IP_MULTICAST_TTL, &t, sizeof t,
                     "IP_MULTICAST_TTL");
        if (rc == 0)
            rc = sockopt(e, l, IPPROTO_IP, IP_MULTICAST_LOOP, &lp, sizeof lp,
                         "IP_MULTICAST_LOOP");
        return rc;
    }
    struct ipv6_mreq mr6;
    const struct sockaddr_in6 *g6 = (const struct sockaddr_in6 *)&l->dest;
    memset(&mr6, 0, sizeof mr6);
    mr6.ipv6mr_multiaddr = g6->sin6_addr;
    mr6.ipv6mr_interface = ifindex;
    int rc = sockopt(e, l, IPPROTO_IPV6, IPV6_JOIN_GROUP, &mr6, sizeof mr6,
                     "IPV6_JOIN_GROUP");
    if (rc == 0 && ifindex)
        rc = sockopt(e, l, IPPROTO_IPV6, IPV6_MULTICAST_IF, &ifindex,
                     sizeof ifindex, "IPV6_MULTICAST_IF");
    if (rc == 0)
        rc = sockopt(e, l, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &ttl, sizeof ttl,
                     "IPV6_MULTICAST_HOPS");
    if (rc == 0)
        rc = sockopt(e, l, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, &loop, sizeof loop,
                     "IPV6_MULTICAST_LOOP");
    if (rc == 0 && ifindex)
        ((struct sockaddr_in6 *)&l->dest)->sin6_scope_id = ifindex;
    return rc;
}

int hb_link_open(hb_engine *e, struct hb_link *l, int id, const hb_link_config *lc)
{
    struct sockaddr_storage bind_ss, local;
    socklen_t bind_len, local_len = sizeof local;
    int one = 1;
    int rc;

    memset(l, 0, sizeof *l);
    l->fd = -1;
    l->kind = lc->kind;
    snprintf(l->desc, sizeof l->desc, "link %d (%s %s port %u)", id,
             kind_name(lc->kind), lc->bind_addr ? lc->bind_addr : "?",
             (unsigned)lc->port);
    if (lc->kind < HB_LINK_UNICAST || lc->kind > HB_LINK_BROADCAST)
        return hb_engine_fail(e, -EINVAL, "link %d: unknown kind %d", id, lc->kind);
    if (lc->ifname && *lc->ifname && !if_nametoindex(lc->ifname))
        return hb_engine_fail(e, -ENODEV, "%s: interface %s: no such interface",
                              l->desc, lc->ifname);
    if (hb_addr_parse(lc->bind_addr, lc->port, &bind_ss, &bind_len) < 0)
        return hb_engine_fail(e, -EINVAL, "%s: bind address %s is not a numeric"
                              " IPv4 or IPv6 address", l->desc,
                              lc->bind_addr ? lc->bind_addr : "(none)");
    l->family = bind_ss.ss_family;
    if (lc->kind != HB_LINK_UNICAST) {
        if (hb_addr_parse(lc->dest_addr, lc->port, &l->dest, &l->destlen) < 0)
            return hb_engine_fail(e, -EINVAL, "%s: destination %s is not a numeric"
                                  " address", l->desc,
                                  lc->dest_addr ? lc->dest_addr : "(none)");
        if (l->dest.ss_family != l->family)
            return hb_engine_fail(e, -EAFNOSUPPORT, "%s: destination %s and bind"
                                  " address %s are of different families",
                                  l->desc, lc->dest_addr, lc->bind_addr);
        if (lc->kind == HB_LINK_BROADCAST && l->family != AF_INET)
            return hb_engine_fail(e, -EAFNOSUPPORT, "%s: broadcast exists only for"
                                  " IPv4; use multicast for IPv6", l->desc);
        if (lc->kind == HB_LINK_MULTICAST) {
            int is_mc = l->family == AF_INET
                ? IN_MULTICAST(ntohl(((struct sockaddr_in *)&l->dest)->sin_addr.s_addr))
                : IN6_IS_ADDR_MULTICAST(&((struct sockaddr_in6 *)&l->dest)->sin6_addr);
            if (!is_mc)
                return hb_engine_fail(e, -EINVAL, "%s: %s is not a multicast group",
                                      l->desc, lc->dest_addr);
            if (l->family == AF_INET6 && (!lc->ifname || !*lc->ifname) &&
                IN6_IS_ADDR_MC_LINKLOCAL(&((struct sockaddr_in6 *)&l->dest)->sin6_addr))
                return hb_engine_fail(e, -EINVAL, "%s: link-local group %s needs an"
                                      " interface name", l->desc, lc->dest_addr);
        }
    }

    l->fd = socket(l->family, SOCK_DGRAM, 0);
    if (l->fd < 0)
        return hb_engine_fail(e, -errno, "%s: socket(): %s", l->desc, strerror(errno));
    if (fcntl(l->fd, F_SETFL, fcntl(l->fd, F_GETFL) | O_NONBLOCK) < 0 ||
        fcntl(l->fd, F_SETFD, FD_CLOEXEC) < 0) {
        rc = hb_engine_fail(e, -errno, "%s: fcntl(): %s", l->desc, strerror(errno));
        goto fail;
    }
    if (l->family == AF_INET6) {
        rc = sockopt(e, l, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one, "IPV6_V6ONLY");
        if (rc < 0)
            goto fail;
    }
    if (lc->kind != HB_LINK_UNICAST) {
        /* Several nodes of a test lab, or several clusters, share a host. */
        rc = sockopt(e, l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one, "SO_REUSEADDR");
        if (rc < 0)
            goto fail;
    }
    if (lc->kind == HB_LINK_BROADCAST) {
        rc = sockopt(e, l, SOL_SOCKET, SO_BROADCAST, &one, sizeof one, "SO_BROADCAST");
        if (rc < 0)
            goto fail;
    }
#ifdef SO_BINDTODEVICE
    /* Unicast and broadcast links follow the routing table unless pinned to
     * an interface; multicast picks its interface with IP(V6)_MULTICAST_IF. */
    if (lc->kind != HB_LINK_MULTICAST && lc->ifname && *lc->ifname) {
        rc = sockopt(e, l, SOL_SOCKET, SO_BINDTODEVICE, lc->ifname,
                     (socklen_t)strlen(lc->ifname) + 1, "SO_BINDTODEVICE");
        if (rc < 0)
            goto fail;
    }
#endif
    {
        int rcvbuf = RCVBUF_BYTES, tos = HEARTBEAT_TOS;
        /* Best effort: the kernel caps the buffer at net.core.rmem_max. */
        (void)setsockopt(l->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
        if (l->family == AF_INET)
            (void)setsockopt(l->fd, IPPROTO_IP, IP_TOS, &tos, sizeof tos);
        else
            (void)setsockopt(l->fd, IPPROTO_IPV6, IPV6_TCLASS, &tos, sizeof tos);
    }

    {
        /* Multicast and broadcast are received only by a socket bound to
         * the group / the wildcard address, not to a unicast one. */
        struct sockaddr_storage b = bind_ss;
        socklen_t blen = bind_len;
        if (lc->kind == HB_LINK_MULTICAST && l->family == AF_INET) {
            b = l->dest;
            blen = l->destlen;
        } else if (lc->kind == HB_LINK_MULTICAST) {
            /* A link-local group needs a scope to bind to; the wildcard
             * does not, and the group membership filters all the same. */
            struct sockaddr_in6 *b6 = (struct sockaddr_in6 *)&b;
            b6->sin6_addr = in6addr_any;
            b6->sin6_scope_id = 0;
        } else if (lc->kind == HB_LINK_BROADCAST) {
            struct sockaddr_in *b4 = (struct sockaddr_in *)&b;
            b4->sin_addr.s_addr = htonl(INADDR_ANY);
        }
        if (bind(l->fd, (struct sockaddr *)&b, blen) < 0) {
            int err = errno;
            rc = hb_engine_fail(e, -err, "%s: bind(): %s%s", l->desc, strerror(err),
                                err == EACCES ? " (ports below 1024 need"
                                " CAP_NET_BIND_SERVICE)" : "");
            goto fail;
        }
    }
    if (lc->kind == HB_LINK_MULTICAST) {
        rc = join_group(e, l, lc, &bind_ss);
        if (rc < 0)
            goto fail;
    }
    if (getsockname(l->fd, (struct sockaddr *)&local, &local_len) < 0) {
        rc = hb_engine_fail(e, -errno, "%s: getsockname(): %s", l->desc,
                            strerror(errno));
        goto fail;
    }
    l->port = ntohs(local.ss_family == AF_INET
                        ? ((struct sockaddr_in *)&local)->sin_port
                        : ((struct sockaddr_in6 *)&local)->sin6_port);
    if (lc->kind != HB_LINK_UNICAST) {
        if (l->family == AF_INET)
            ((struct sockaddr_in *)&l->dest)->sin_port = htons(l->port);
        else
            ((struct sockaddr_in6 *)&l->dest)->sin6_port = htons(l->port);
    }
    return 0;
fail:
    hb_link_close(l);
    return rc;
}

void hb_link_close(struct hb_link *l)
{
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
}

static void send_warn(hb_engine *e, int link, int err, uint64_t now)
{
    struct hb_link *l = &e->links[link];
    e->c.send_errors++;
    if (now - l->last_warn_ns >= HB_NS_PER_SEC || !l->last_warn_ns) {
        l->last_warn_ns = now;
        hb_event_emit(e, HB_EV_WARNING, 0, link, now, HB_WARN_SEND, (uint64_t)err);
    }
}

int hb_link_send_all(hb_engine *e, int type, uint32_t to_node, const uint8_t *p,
                     size_t len, uint64_t now)
{
    hb_header h;
    memset(&h, 0, sizeof h);
    h.version = HB_WIRE_VERSION;
    h.type = (uint8_t)type;
    h.cluster_id = e->cfg.cluster_id;
    h.node_id = e->cfg.node_id;
    h.generation = e->cfg.generation;
    h.seq = ++e->seq;
    h.interval_us = e->cfg.timing.interval_us;
    int n = hb_wire_seal(e->kr, &h, p, len, e->tx, sizeof e->tx);
    if (n < 0)
        return n;
    int sent_any = 0, first_err = 0;
    for (int li = 0; li < e->n_links; li++) {
        struct hb_link *l = &e->links[li];
        int k = 0;
        if (l->kind == HB_LINK_UNICAST) {
            for (int pi = 0; pi < e->n_peers; pi++) {
                struct hb_peer *peer = e->peers[pi];
                struct hb_peer_link *pl = &peer->link[li];
                if (!pl->has_addr || (to_node && peer->node_id != to_node))
                    continue;
                e->txd[k].buf = e->tx;
                e->txd[k].len = (size_t)n;
                memcpy(&e->txd[k].addr, &pl->addr, pl->addrlen);
                e->txd[k].addrlen = pl->addrlen;
                /* Authenticated heartbeats from this peer on this link are
                 * proof of a working neighbour: without it the kernel
                 * re-probes the neighbour entry every half minute or so, and
                 * on a lossy link a failed probe stops all sends to the peer
                 * until ARP / ND succeeds again (hundreds of ms). */
                e->txd[k].confirm = pl->up;
                k++;
            }
        } else {
            e->txd[0].buf = e->tx;
            e->txd[0].len = (size_t)n;
            memcpy(&e->txd[0].addr, &l->dest, l->destlen);
            e->txd[0].addrlen = l->destlen;
            e->txd[0].confirm = 0;
            k = 1;
        }
        for (int off = 0; off < k;) {
            int r = hb_send_batch(l->fd, e->txd + off, k - off);
            if (r < 0) {
                /* Skip the datagram that failed and go on with the rest. */
                if (!first_err)
                    first_err = r;
                send_warn(e, li, -r, now);
                off++;
                continue;
            }
            e->c.sent += (uint64_t)r;
            sent_any = 1;
            off += r;
        }
    }
    if (!sent_any && first_err)
        return first_err;
    return 0;
}
