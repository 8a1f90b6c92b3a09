"""Errors that reach the user as one line, never as a traceback."""

from __future__ import annotations

import errno


class UserError(Exception):
    """Bad input: the CLI prints the message on one line and exits with ``code``."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


# OS errors that say the data directory cannot take a write, not that
# tritriage has a bug: the user fixes them by freeing space or choosing a
# writable $TRITRIAGE_HOME.
_NO_SPACE = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


def environment_message(exc: BaseException, data_dir: str) -> str | None:
    """One line for a failure of the disk or database under ``data_dir``, or
    None when ``exc`` is something else (a bug: the caller reports it as such)."""
    import sqlite3

    where = f"the data directory {data_dir}"
    fix_space = "free some space there (or set TRITRIAGE_HOME to another disk) and run the command again; " \
                "finished runs are intact"
    fix_ro = "make it writable or set TRITRIAGE_HOME to a writable directory; finished runs are intact"
    if isinstance(exc, sqlite3.Error):
        text = str(exc).lower()
        if "disk is full" in text:
            return f"{where} is full (the store could not be written): {fix_space}"
        if "readonly" in text or "read-only" in text or "unable to open" in text:
            return f"{where} is read-only or unreachable (the store could not be written): {fix_ro}"
        if "locked" in text or "busy" in text:
            return (f"the store in {where} is locked by another tritriage process: wait for it to finish "
                    "(or set TRITRIAGE_HOME to another directory)")
        if "disk i/o error" in text:
            return f"{where}: disk I/O error while writing the store ({exc}): check the disk and run again"
        return None
    if isinstance(exc, OSError) and exc.errno is not None:
        name = f" ({exc.filename})" if exc.filename else ""
        if exc.errno in _NO_SPACE:
            return f"{where} is full{name}: {fix_space}"
        if exc.errno in _READ_ONLY and exc.filename and str(exc.filename).startswith(str(data_dir)):
            return f"{where} is not writable{name}: {fix_ro}"
        if exc.filename and exc.errno in _USER_PATH:
            return f"{exc.filename}: {exc.strerror or exc}"
    return None


# A path the user named that cannot be written or read (``-o``, ``--write``).
_USER_PATH = (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT, errno.EISDIR, errno.ENOTDIR)
