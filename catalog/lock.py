"""One writer per catalog: an exclusive lock that a curation run holds from its start to its last table write.

The lock is `fcntl.flock` on `<root>/.catalog.lock`. The file holds who took it (host, pid, owner such as a
flow run, time) so that a refused run can say whom it waits for; it is removed on release, so a finished
catalog holds no trace of it.

Stale locks need no cleanup: the kernel drops a flock when its holder dies (SIGKILL, OOM, a container
stopped), so a file left behind by a killed run is simply taken over by the next one. This holds across
containers on one host sharing a bind mount, and across hosts on NFSv4 (flock is mapped to byte-range locks
whose lease expires when the client is gone). It does not hold on file systems without locks (object
storage, some FUSE mounts): see docs/deployment.md.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

LOCK_FILE = ".catalog.lock"


class CatalogLockedError(RuntimeError):
    """Another run holds the catalog's lock."""


@contextmanager
def catalog_lock(root: str | Path, owner: str = "", wait_s: float = 0.0, poll_s: float = 0.5) -> Iterator[Path]:
    """Hold the exclusive write lock of the catalog folder `root` (which must exist) for the `with` block.

    Args:
        root: catalog root folder.
        owner: who takes the lock, shown to refused runs (e.g. "flow run 'keen-leech' (<id>)").
        wait_s: seconds to wait for a held lock before giving up; 0 refuses at once.
        poll_s: seconds between attempts while waiting.

    Yields the lock file's path. Raises CatalogLockedError, naming the holder, when the lock stays held.
    """
    path = Path(root) / LOCK_FILE
    fd = _acquire(path, wait_s, poll_s)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder_record(owner)).encode(), 0)
        yield path
    finally:
        # Unlink before unlocking: a waiter that opened the old file then finds it gone and retries on a new one.
        path.unlink(missing_ok=True)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def holder_record(owner: str) -> dict:
    """What a lock says about its holder (shown to refused runs): owner, host, pid, since."""
    return {
        "owner": owner,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def lock_holder(root: str | Path) -> dict | None:
    """What the lock file of `root` says about its holder, or None when there is no readable file."""
    try:
        return json.loads((Path(root) / LOCK_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _acquire(path: Path, wait_s: float, poll_s: float) -> int:
    deadline = time.monotonic() + wait_s
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if time.monotonic() >= deadline:
                raise CatalogLockedError(_refusal(path, wait_s)) from None
            time.sleep(poll_s)
            continue
        if _is_current(fd, path):
            return fd
        # The holder released (and removed) the file between our open and our flock: lock the new file instead.
        os.close(fd)


def _is_current(fd: int, path: Path) -> bool:
    try:
        current = os.stat(path)
    except FileNotFoundError:
        return False
    locked = os.fstat(fd)
    return (locked.st_dev, locked.st_ino) == (current.st_dev, current.st_ino)


def _refusal(path: Path, wait_s: float) -> str:
    return refusal_message(str(path.parent), lock_holder(path.parent), wait_s)


def refusal_message(catalog: str, holder: dict | None, wait_s: float) -> str:
    """The CatalogLockedError text: which catalog, who holds it (from the lock's contents) since when."""
    who = (
        f"{holder.get('owner') or 'a curation run'} on host {holder.get('host')}, pid {holder.get('pid')}, "
        f"since {holder.get('since')}"
        if holder
        else "another curation run"
    )
    waited = f" (waited {wait_s:g} s)" if wait_s > 0 else ""
    return (
        f"catalog {catalog} is being written by {who}{waited}; "
        "rerun when it has finished (reruns are incremental)"
    )
