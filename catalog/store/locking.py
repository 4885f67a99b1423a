"""The catalog's write lock, wherever the catalog lives.

A local catalog keeps `catalog.lock` (fcntl.flock, released by the kernel when its holder dies). Object
storage has no flock; there the lock is an object, `<prefix>/.catalog.lock`, holding who took it and a lease
expiry:

- taking it is a conditional PUT (`If-None-Match: *`): of two runs only one creates the object;
- the holder renews the lease from a heartbeat thread (a PUT conditional on the object's ETag, `If-Match`);
- a lock whose lease has expired (its holder was killed) is taken over by a PUT conditional on the ETag the
  taker read, so of two takers only one wins;
- release deletes it (conditional on the holder's ETag: a lock taken over meanwhile is left alone).

Expiry is compared with the taker's clock: hosts' clocks must agree to well within the lease (60 s).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from catalog.lock import LOCK_FILE, CatalogLockedError, catalog_lock, holder_record, refusal_message
from catalog.store.location import CatalogLocation

LEASE_S = 60.0
# The leases this process holds, by catalog URL (see confirm_held).
_HELD: dict[str, "ObjectLease"] = {}


@contextmanager
def catalog_write_lock(
    location: str | Path | CatalogLocation,
    owner: str = "",
    wait_s: float = 0.0,
    poll_s: float = 0.5,
    lease_s: float = LEASE_S,
) -> Iterator[str]:
    """Hold the exclusive write lock of the catalog at `location` for the `with` block.

    A local folder is created if missing and locked with `catalog.lock.catalog_lock`; an S3 prefix with an
    object lease (`lease_s` seconds, renewed every `lease_s / 4`). Raises CatalogLockedError, naming the
    holder, when the lock stays held for `wait_s` seconds. Yields the lock's path or URL.
    """
    location = CatalogLocation.parse(location)
    if location.is_local:
        location.local_path.mkdir(parents=True, exist_ok=True)
        with catalog_lock(location.local_path, owner=owner, wait_s=wait_s, poll_s=poll_s) as path:
            yield str(path)
        return
    lease = ObjectLease(location, owner, lease_s)
    lease.acquire(wait_s, poll_s)
    _HELD[location.url] = lease
    stop = threading.Event()
    heartbeat = threading.Thread(target=lease.renew_until, args=(stop,), name="catalog-lock-heartbeat", daemon=True)
    heartbeat.start()
    try:
        yield location.url_of(LOCK_FILE)
    finally:
        _HELD.pop(location.url, None)
        stop.set()
        heartbeat.join()
        lease.release()


def confirm_held(location: CatalogLocation) -> None:
    """Before publishing: when this process holds the lease of `location`, check that the lock object is
    still ours. A run that stalled past its lease (its heartbeat starved) may have been taken over by
    another run, and must then publish nothing. Raises CatalogLockedError naming the new holder."""
    lease = _HELD.get(location.url)
    if lease is None:
        return
    holder, _ = lease.current()
    if lease.lost or not holder or holder.get("token") != lease._holder["token"]:
        lease.lost = True
        raise CatalogLockedError(
            f"catalog {location.url}: this run's lock expired and was taken over by "
            f"{(holder or {}).get('owner') or 'another run'}; nothing was published (rerun when it has finished)"
        )


class ObjectLease:
    """The lock object of an S3 catalog (see the module docstring)."""

    def __init__(self, location: CatalogLocation, owner: str, lease_s: float):
        self.location = location
        self.lease_s = lease_s
        self.etag: str | None = None
        self.lost = False
        bucket_and_prefix = location.path(LOCK_FILE)
        self._bucket, self._key = bucket_and_prefix.split("/", 1)
        self._holder = {**holder_record(owner), "token": uuid.uuid4().hex}

    def _body(self) -> bytes:
        expires = time.time() + self.lease_s
        return json.dumps({**self._holder, "expires": expires}).encode()

    def _put(self, **condition) -> str:
        answer = self.location.fs.call_s3(
            "put_object", Bucket=self._bucket, Key=self._key, Body=self._body(), **condition
        )
        return answer["ETag"]

    def current(self) -> tuple[dict | None, str | None]:
        """The lock object's holder record and ETag, (None, None) when there is none.

        The ETag is read first: should the object change before its body is read, a takeover conditional
        on that ETag fails and is retried, whatever the body said.
        """
        try:
            etag = self.location.fs.call_s3("head_object", Bucket=self._bucket, Key=self._key)["ETag"]
            data = self.location.fs.cat_file(self.location.path(LOCK_FILE))
        except FileNotFoundError:
            return None, None
        try:
            return json.loads(data), etag
        except json.JSONDecodeError:
            return {}, etag

    def acquire(self, wait_s: float, poll_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self.etag = self._put(IfNoneMatch="*")
                return
            except OSError as error:
                if not _precondition_failed(error):
                    raise
            holder, etag = self.current()
            if etag is not None and (holder is None or float((holder or {}).get("expires", 0)) < time.time()):
                try:
                    self.etag = self._put(IfMatch=etag)  # take over an expired lease: one taker wins
                    return
                except OSError as error:
                    if not _precondition_failed(error):
                        raise
            elif etag is None:
                continue  # released between our PUT and our GET: try again at once
            if time.monotonic() >= deadline:
                raise CatalogLockedError(refusal_message(self.location.url, holder, wait_s))
            time.sleep(poll_s)

    def renew_until(self, stop: threading.Event) -> None:
        """Renew the lease every `lease_s / 4` until `stop` is set (the heartbeat thread's body)."""
        while not stop.wait(self.lease_s / 4):
            try:
                self.etag = self._put(IfMatch=self.etag)
            except OSError as error:
                if _precondition_failed(error):
                    self.lost = True  # taken over: this run was presumed dead; its publication may race
                    return
                # A transient error: the next beat retries while the lease still runs.

    def release(self) -> None:
        if self.lost or self.etag is None:
            return
        try:
            self.location.fs.call_s3("delete_object", Bucket=self._bucket, Key=self._key, IfMatch=self.etag)
        except (OSError, FileNotFoundError):
            pass  # taken over after our lease expired, or already gone: nothing of ours to remove


def _precondition_failed(error: OSError) -> bool:
    """S3's 412 (the condition did not hold) or 409 (a concurrent conditional write), as s3fs raises them."""
    text = f"{error} {error.__cause__!r}"
    return isinstance(error, FileExistsError) or any(
        needle in text for needle in ("PreconditionFailed", "pre-condition", "ConditionalRequestConflict", "412")
    )
