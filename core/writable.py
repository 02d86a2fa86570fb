"""Output folders that cannot be written, or a disk that fills up: checked before a job starts, explained after.

:func:`check_writable` is the cheap pre-check (create the folder, write and remove a small probe file), run before
a job starts so a read-only or full output folder fails the run at once, not after hours of work.
:func:`explain_write_error` turns the ``OSError`` a write raised (``EACCES``, ``EPERM``, ``EROFS``, ``ENOSPC``,
``EDQUOT``) into an error that names the path and the fix; :func:`writes_to` does that around a block of writes.
Nothing is deleted on the way: files already in the folder stay as they are.
"""

from __future__ import annotations

import errno
import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.errors import DiskFullError, OutputNotWritableError, WorkbenchError

log = logging.getLogger(__name__)

NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)
FULL = (errno.ENOSPC, errno.EDQUOT)


def explain_write_error(exc: OSError, path: str | Path, what: str = "the output") -> WorkbenchError | OSError:
    """The clear error for ``exc`` raised while writing ``what`` at ``path`` (``exc`` itself for other errnos)."""
    where = exc.filename or path
    if exc.errno in NOT_WRITABLE:
        return OutputNotWritableError(
            f"cannot write {what} at {where}: {os.strerror(exc.errno)} (errno {errno.errorcode[exc.errno]}). Give "
            "the user that runs the job write permission on that folder (or remount it read-write), or choose "
            "another output folder"
        )
    if exc.errno in FULL:
        return DiskFullError(
            f"cannot write {what} at {where}: the disk (or quota) is full (errno {errno.errorcode[exc.errno]}). "
            "Free space on that file system or choose an output folder on another one; files already written "
            "there were kept"
        )
    return exc


def check_writable(folder: str | Path, what: str = "the output") -> Path:
    """Create ``folder`` if needed and prove it takes a file (a probe written, synced and removed); returns it.

    Raises:
        OutputNotWritableError: no permission, or a read-only file system.
        DiskFullError: no space (or quota) left on its file system.
    """
    folder = Path(folder)
    probe = folder / f".workbench-write-check-{uuid.uuid4().hex}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise explain_write_error(exc, folder, what) from exc
    finally:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            log.warning("could not remove the write probe %s", probe)
    return folder


@contextmanager
def writes_to(path: str | Path, what: str = "the output") -> Iterator[None]:
    """Around writes to ``path``: a permission, read-only or disk-full ``OSError`` becomes the clear error."""
    try:
        yield
    except OSError as exc:
        clear = explain_write_error(exc, path, what)
        if clear is exc:
            raise
        raise clear from exc
