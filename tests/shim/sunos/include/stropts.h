/*
 * stropts.h (heart's Solaris shim, tests/shim/sunos/) - the STREAMS calls
 * and structures src_c/platform/sunos/ uses, written from putmsg(2),
 * getmsg(2) and streamio(7I).  glibc dropped its (never functional)
 * <stropts.h> in 2.30, so nothing of the system is shadowed.  putmsg and
 * getmsg are provided by the shim (tests/shim/sunos/shim_dlpi.c) under the
 * names shim.h maps them to; nothing defines the plain names on Linux.
 */
#ifndef HB_SHIM_STROPTS_H
#define HB_SHIM_STROPTS_H

/* one part (control or data) of a STREAMS message */
struct strbuf {
    int maxlen; /* getmsg: room in buf; < 0: leave this part alone */
    int len;    /* bytes in buf; -1: the message has no such part */
    char *buf;
};

/* ioctl(fd, I_STR, &strioctl): an M_IOCTL for the driver */
struct strioctl {
    int ic_cmd;    /* e.g. DLIOCRAW */
    int ic_timout; /* seconds; 0: the default (15 s); -1: forever */
    int ic_len;    /* bytes of ic_dp sent, and on return, received */
    char *ic_dp;
};

#define STR ('S' << 8)
#define I_NREAD (STR | 01)
#define I_PUSH (STR | 02)
#define I_POP (STR | 03)
#define I_LOOK (STR | 04)
#define I_FLUSH (STR | 05)
#define I_SRDOPT (STR | 06)
#define I_GRDOPT (STR | 07)
#define I_STR (STR | 010)

#define FLUSHR 0x01
#define FLUSHW 0x02
#define FLUSHRW 0x03

/* putmsg flags / getmsg *flagsp */
#define RS_HIPRI 0x01 /* a high-priority (M_PCPROTO) message */
#define MSG_HIPRI 0x01

/* getmsg return bits: part of the message is still to be read */
#define MORECTL 1
#define MOREDATA 2

int putmsg(int fd, const struct strbuf *ctlptr, const struct strbuf *dataptr,
           int flags);
int getmsg(int fd, struct strbuf *ctlptr, struct strbuf *dataptr, int *flagsp);

#endif /* HB_SHIM_STROPTS_H */
