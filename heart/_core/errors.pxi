# Errors: libheart returns -errno; the engine names the failing call in
# hb_engine_last_error().  OSError(errno, msg) picks the matching subclass
# (PermissionError for EPERM, FileExistsError for EEXIST, ...) by itself.

cdef object _oserror(int rc, str what):
    cdef int err = -rc
    return OSError(err, f"{what}: {os.strerror(err)}")


cdef inline int _check(int rc, str what) except -1:
    if rc < 0:
        raise _oserror(rc, what)
    return rc


class WireError(ValueError):
    """A packet was rejected by the codec; ``cause`` names why."""

    def __init__(self, int cause):
        self.cause = hb_reject_name(cause).decode()
        self.code = cause
        super().__init__(f"packet rejected: {self.cause}")
