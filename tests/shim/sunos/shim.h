/*
 * shim.h - force-included (gcc -include) into the src_c/platform/sunos/
 * sources when CMake builds libheart_sunos_shim.so on Linux (see
 * CMakeLists.txt, HEART_SHIMS).  How the shim works:
 *
 *  - tests/shim/sunos/include/ is first on the include path and supplies the
 *    Solaris headers Linux lacks (<sys/dlpi.h>, <stropts.h>); every other
 *    header is the system's.
 *  - This file first includes the system headers that declare the calls it
 *    takes over, then renames them with object-like macros, so the
 *    backend's later #includes are no-ops and only its own calls are
 *    redirected: open/close/read/write/ioctl/poll/putmsg/getmsg become
 *    hb_shim_* (tests/shim/sunos/shim_dlpi.c).
 *  - The shim emulates DLPI device nodes: open("/dev/net/<if>") (style 1)
 *    or open("/dev/<driver>") (style 2, with HEART_SHIM_DLPI_STYLE2=1)
 *    returns a real AF_PACKET socket, so the fd is pollable by the engine's
 *    loop; a per-fd table holds the DLPI state machine, the queued
 *    acknowledgements and the partly read message.  Any other fd or path
 *    goes straight to the real call.
 *  - The shim's own .c files are not compiled with this file forced in;
 *    they include it with HB_SHIM_NO_RENAME defined for the prototypes
 *    alone, and so call the real functions.
 */
#ifndef HB_SHIM_SUNOS_SHIM_H
#define HB_SHIM_SUNOS_SHIM_H

#include <fcntl.h>
#include <poll.h>
#include <stropts.h>
#include <sys/ioctl.h>
#include <sys/types.h>
#include <unistd.h>

int hb_shim_open(const char *path, int flags, ...);
int hb_shim_close(int fd);
ssize_t hb_shim_read(int fd, void *buf, size_t n);
ssize_t hb_shim_write(int fd, const void *buf, size_t n);
int hb_shim_ioctl(int fd, unsigned long req, ...);
int hb_shim_poll(struct pollfd *fds, nfds_t n, int timeout);
int hb_shim_putmsg(int fd, const struct strbuf *ctl, const struct strbuf *data,
                   int flags);
int hb_shim_getmsg(int fd, struct strbuf *ctl, struct strbuf *data, int *flagsp);

#ifndef HB_SHIM_NO_RENAME
#define open hb_shim_open
#define close hb_shim_close
#define read hb_shim_read
#define write hb_shim_write
#define ioctl hb_shim_ioctl
#define poll hb_shim_poll
#define putmsg hb_shim_putmsg
#define getmsg hb_shim_getmsg
#endif

#endif /* HB_SHIM_SUNOS_SHIM_H */
