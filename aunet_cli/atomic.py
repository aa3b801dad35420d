"""Files that are whole or absent: written under a temporary name, fsynced, renamed.

Every file aunet writes goes through here (shards, state files, manifests, the
training stream, models, plots), so a killed run or a full disk never leaves a
half-written file under a real name, and a refused write is one line (exit 5).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO

from .errors import OutputWriteError

# What a refused write looks like: no space or quota, a file size limit, no
# permission, a read-only or failing disk, a directory where the file goes, a name
# too long (a file in the way of a folder stops replacing()'s mkdir, whatever its
# error). Other OSErrors (a codec's, a vanished temporary) are not the user's to
# fix: they pass.
REFUSED_WRITE = frozenset(
    {
        errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS,
        errno.EIO, errno.EISDIR, errno.ENAMETOOLONG,
    }
)  # fmt: skip

TAG = ".tmp-"  # in every temporary's name: .NAME.tmp-HOST-PID[.BOOT]
LONG_NAME = 128  # bytes of NAME kept in a temporary's name; a longer one is hashed


@cache
def boot_id() -> str:
    """Eight hex digits naming this boot of this host ("" where unknown: not Linux).
    A temporary of an earlier boot has lost its writer (a power loss, a crash),
    whatever process has its pid now; compared as names, not clocks."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:8]
    except OSError:
        return ""


def temporary_name(path: Path) -> Path:
    """Where `path` is written until it is whole: hidden, and naming its writer (host,
    process and boot), so that a rerun can tell a dead writer's leftovers from the
    files a live job of the same job array is writing (remove_stale_temporaries)."""
    name = path.name
    if len(name.encode()) > LONG_NAME:  # room for the tag within the 255-byte limit
        name = hashlib.sha256(name.encode()).hexdigest()[:32]
    boot = f".{boot_id()}" if boot_id() else ""
    return path.with_name(f".{name}{TAG}{socket.gethostname()}-{os.getpid()}{boot}")


def remove_stale_temporaries(folder: Path) -> None:
    """Half-written files in `folder` and one level down whose writer is gone: a
    process of this host and boot that no longer runs (or this one, whose writes are
    over when this is called), a writer of this host before its last boot, or a
    writer elsewhere that has not touched its file for STALE_AFTER_S. The jobs of a
    job array may write into the same directory at once: their files in progress
    stay."""
    host = socket.gethostname()
    for tmp in [*folder.glob(f".*{TAG}*"), *folder.glob(f"*/.*{TAG}*")]:
        with suppress(FileNotFoundError):  # its writer renamed or removed it meanwhile
            if tmp.is_file() and _writer_gone(tmp, host):
                tmp.unlink()


STALE_AFTER_S = 3600  # a shard is written in seconds, every write touching the file


def _writer_gone(tmp: Path, host: str) -> bool:
    """For a temporary named by temporary_name (or an older name: by its age)."""
    writer = tmp.name.rpartition(TAG)[2]
    head, _, boot = writer.rpartition(".")
    if head and re.fullmatch("[0-9a-f]{8}", boot):
        writer = head
    else:
        boot = ""
    writer_host, _, pid = writer.rpartition("-")
    if writer_host != host or not pid.isdigit():
        return time.time() - tmp.stat().st_mtime > STALE_AFTER_S
    if boot and boot != boot_id():  # written before this host's last boot
        return True
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # it runs, as another user
        pass
    return False


def fsync_directory(folder: Path) -> None:
    """Make the renames into `folder` durable: a file's own fsync covers its bytes, but
    its name lives in the folder, and POSIX only promises that a rename survives a
    power loss once the folder is fsynced too. `aunet prep` relies on the order: a
    chunk's state file is written only once its shards' names are on disk, so a
    resumed run never trusts a chunk whose shards vanished with the power. A file
    system that cannot fsync a folder (EINVAL, ENOSYS), or a folder this user may
    write but not read, is left as it is."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except PermissionError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF, errno.ENOSYS):
            raise
    finally:
        os.close(fd)


def make_folders(folder: Path) -> None:
    """mkdir -p, with each new folder's name made durable in its parent (a power loss
    must not take a folder such as prep's .state/ while files in others survive)."""
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for new in reversed(missing):
        new.mkdir(exist_ok=True)  # another job of an array may make it at the same time
        fsync_directory(new.parent)


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
        make_folders(path.parent)
    except OSError as exc:  # whatever the reason, the folder cannot be made here
        blocker = next((f for f in path.parents if f.exists() and not f.is_dir()), None)
        if blocker is not None:
            raise OutputWriteError(
                f"cannot write {path}: {blocker} is a file, not a folder; choose another "
                "path or move the file"
            ) from None
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
