"""The S3 catalog lock: a conditional PUT, a lease renewed by a heartbeat, an expired lease taken over."""

from __future__ import annotations

import threading
import time

import pytest

from catalog.lock import CatalogLockedError
from catalog.store.location import CatalogLocation
from catalog.store.locking import ObjectLease, catalog_write_lock


def test_a_second_writer_is_refused_naming_the_holder_and_the_lock_is_removed_on_release(s3_catalog_url):
    location = CatalogLocation.parse(s3_catalog_url)
    with catalog_write_lock(s3_catalog_url, owner="run A") as lock:
        assert lock == f"{s3_catalog_url}/.catalog.lock" and location.exists(".catalog.lock")
        refusal = rf"catalog {s3_catalog_url} is being written by run A on host .* pid \d+"
        with pytest.raises(CatalogLockedError, match=refusal):
            with catalog_write_lock(s3_catalog_url, owner="run B"):
                pass
    assert not location.exists(".catalog.lock")
    with catalog_write_lock(s3_catalog_url, owner="run B"):
        pass


def test_the_heartbeat_keeps_a_held_lease_alive(s3_catalog_url):
    with catalog_write_lock(s3_catalog_url, owner="long run", lease_s=0.8):
        time.sleep(2.0)  # more than two leases: only the renewals keep it held
        with pytest.raises(CatalogLockedError, match="long run"):
            with catalog_write_lock(s3_catalog_url, owner="impatient"):
                pass


def test_an_expired_lease_is_taken_over_and_its_old_holder_notices(s3_catalog_url):
    location = CatalogLocation.parse(s3_catalog_url)
    killed = ObjectLease(location, "killed run", lease_s=0.5)
    killed.acquire(wait_s=0, poll_s=0.1)  # no heartbeat: as if its process had died
    time.sleep(0.8)
    with catalog_write_lock(s3_catalog_url, owner="next run"):
        holder, _ = killed.current()
        assert holder["owner"] == "next run"
        beat = threading.Event()
        threading.Timer(1.0, beat.set).start()
        killed.renew_until(beat)  # its first renewal finds the lock taken over
        assert killed.lost
        killed.release()  # conditional: leaves the new holder's lock alone
        assert location.exists(".catalog.lock")
    assert not location.exists(".catalog.lock")


def test_of_two_takers_of_an_expired_lease_only_one_wins(s3_catalog_url):
    location = CatalogLocation.parse(s3_catalog_url)
    ObjectLease(location, "killed run", lease_s=0.1).acquire(wait_s=0, poll_s=0.1)
    time.sleep(0.3)
    takers = [ObjectLease(location, f"taker {i}", lease_s=30) for i in range(2)]
    etags = [taker.current()[1] for taker in takers]
    assert etags[0] == etags[1]
    outcomes = []
    for taker, etag in zip(takers, etags):
        try:
            taker._put(IfMatch=etag)
            outcomes.append("won")
        except OSError:
            outcomes.append("refused")
    assert outcomes == ["won", "refused"]


def test_a_run_whose_lease_was_taken_over_publishes_nothing(s3_catalog_url):
    from catalog.store.manifest import publish_tables, read_manifest
    from tests.catalog.store.test_manifest import _tables

    location = CatalogLocation.parse(s3_catalog_url)
    with pytest.raises(CatalogLockedError, match="lock expired and was taken over by run B; nothing was published"):
        with catalog_write_lock(s3_catalog_url, owner="stalled run A"):
            # As if A stalled past its lease and B took the lock over.
            location.write_bytes(".catalog.lock", b'{"owner": "run B", "token": "b", "expires": 1e12}')
            publish_tables(location, _tables(["a"]))
    assert read_manifest(location) is None
    assert location.read_bytes(".catalog.lock").startswith(b'{"owner": "run B"'), "B's lock is left alone"
