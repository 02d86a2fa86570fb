"""File fingerprints with the standard library only: the digest of registration and the check that a file still
matches it.

Only the standard library is imported, so this module can travel by value to a Dask worker that cannot import the
engine (see :mod:`core.distributed.probes`) and check the scene's files there with the same rules as the client.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

DIGEST_CHUNK = 1 << 20
"""Bytes hashed at each end of a file (1 MiB)."""


def file_digest(path: str | Path, size: int | None = None) -> str:
    """sha256 hex of the first and last :data:`DIGEST_CHUNK` bytes of ``path`` and its size."""
    p = Path(path)
    size = p.stat().st_size if size is None else size
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        h.update(fh.read(DIGEST_CHUNK))
        if size > DIGEST_CHUNK:
            fh.seek(max(DIGEST_CHUNK, size - DIGEST_CHUNK))
            h.update(fh.read(DIGEST_CHUNK))
    h.update(str(size).encode())
    return h.hexdigest()


def file_change(path: str, size: int, mtime_ns: int, digest: str) -> str | None:
    """Why the file at ``path`` no longer matches its fingerprint (``"vanished"``, ``"size ..."``,
    ``"content changed"``), or None.

    Size and mtime are compared first; the digest is recomputed only when the mtime moved (a touched but identical
    file still matches).
    """
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        return "vanished"
    if st.st_size != size:
        return f"size {st.st_size} bytes instead of {size}"
    if st.st_mtime_ns == mtime_ns:
        return None
    if file_digest(p, st.st_size) != digest:
        return "content changed"
    return None


def readable_change(path: str, size: int, mtime_ns: int, digest: str) -> str | None:
    """:func:`file_change`, and also ``"not readable ..."`` when this process may not open the file (wrong user or
    permissions), which a matching size and mtime alone would not reveal."""
    try:
        change = file_change(path, size, mtime_ns, digest)
        if change is None:
            with open(path, "rb") as fh:
                fh.read(1)
    except PermissionError as exc:
        return f"not readable by uid {os.getuid()} ({exc.strerror})"
    except OSError as exc:
        return f"cannot be read ({type(exc).__name__}: {exc.strerror or exc})"
    return change
