"""Files that are whole or absent: written under a temporary name, fsynced, renamed.

Every file aunet writes goes through here (shards, state files, manifests, the
training stream, models, plots), so a killed run or a full disk never leaves a
half-written file under a real name, and a refused write is one line (exit 5).
"""

from __future__ import annotations

import errno
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, BinaryIO

from .errors import OutputWriteError

# What a refused write looks like: no space or quota, a file size limit, no
# permission, a read-only or failing disk, a directory where the file goes (a file
# in the way of a folder stops replacing()'s mkdir, whatever its error). Other
# OSErrors (a codec's, a vanished temporary) are not the user's to fix: they pass.
REFUSED_WRITE = frozenset(
    {
        errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS,
        errno.EIO, errno.EISDIR,
    }
)  # fmt: skip


def temporary_name(path: Path) -> Path:
    """Where `path` is written until it is whole: hidden, and naming its writer (host
    and process), so that a rerun can tell a dead writer's leftovers from the files a
    live job of the same job array is writing (prep_output.remove_stale_temporaries)."""
    return path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")


def fsync_directory(folder: Path) -> None:
    """Make the renames into `folder` durable: a file's own fsync covers its bytes, but
    its name lives in the folder, and POSIX only promises that a rename survives a
    power loss once the folder is fsynced too. `aunet prep` relies on the order: a
    chunk's state file is written only once its shards' names are on disk, so a
    resumed run never trusts a chunk whose shards vanished with the power. A file
    system that cannot fsync a folder (EINVAL), or a folder this user may write but
    not read, is left as it is."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except PermissionError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


@contextmanager
def replacing_path(path: Path) -> Iterator[Path]:
    """A temporary name to write `path` under, for writers that want a file name
    (safetensors, matplotlib). When the block ends the file is fsynced, renamed to
    `path` and its folder fsynced, so `path` is either whole or absent, and once this
    returns it stays whole through a crash or power loss.

    If the system refuses a write (disk full, file too large, no permission), the
    temporary is removed and an OutputWriteError names `path` in one line. Files
    finished before stay (`aunet prep` resumes from them). Such an OSError raised by
    the block counts too: name the errors of anything read there first."""
    tmp = temporary_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # whatever the reason, the folder cannot be made here
        raise _refused(path, exc) from None
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # the file's data, whichever descriptor wrote it
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_directory(path.parent)
    except BaseException as exc:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in REFUSED_WRITE:
            raise _refused(path, exc) from None
        raise


@contextmanager
def replacing(path: Path) -> Iterator[BinaryIO]:
    """replacing_path() with the temporary opened for writing (closed before the fsync)."""
    with replacing_path(path) as tmp, open(tmp, "wb") as f:
        yield f


def _refused(path: Path, exc: OSError) -> OutputWriteError:
    return OutputWriteError(
        f"cannot write {path}: {exc.strerror or exc}; free some space or fix the cause, "
        "then run the same command again"
    )


def write_text_atomic(path: Path, text: str) -> None:
    with replacing(path) as f:
        f.write(text.encode())


def write_json_atomic(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
