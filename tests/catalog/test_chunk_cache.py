import numpy as np
import pytest
import zarr

from catalog.chunk_cache import ChunkCache
from catalog.reader import Catalog, read_window


@pytest.fixture()
def array(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(-1000, 1000, size=(150, 140, 200)).astype(np.int16)
    stored = zarr.create_array(str(tmp_path / "a.zarr"), shape=data.shape, dtype=data.dtype, chunks=(64, 64, 64),
                               shards=(128, 128, 128))
    stored[:] = data
    return zarr.open_array(str(tmp_path / "a.zarr"), mode="r"), data


def test_cached_windows_equal_direct_reads_anywhere(array):
    stored, data = array
    cache = ChunkCache(64 << 20)
    rng = np.random.default_rng(1)
    for _ in range(40):
        start = rng.integers(-80, np.asarray(data.shape) + 10)
        size = tuple(int(n) for n in rng.integers(1, 130, size=3))
        assert np.array_equal(cache.window("a", stored, start, size, -7), read_window(stored, start, size, -7))
    assert cache.hits > cache.misses > 0, "overlapping windows reuse decoded chunks"


def test_second_read_of_a_window_decodes_nothing(array):
    stored, _ = array
    cache = ChunkCache(64 << 20)
    cache.window("a", stored, np.array([10, 20, 30]), (128, 128, 128), 0)
    misses = cache.misses
    assert misses == 27
    cache.window("a", stored, np.array([10, 20, 30]), (128, 128, 128), 0)
    assert cache.misses == misses and cache.hits == 27


def test_budget_is_kept_and_least_recently_used_go_first(array):
    stored, data = array
    chunk_bytes = 64**3 * 2
    cache = ChunkCache(5 * chunk_bytes)
    cache.window("a", stored, np.array([0, 0, 0]), (64, 64, 64), 0)      # chunk (0, 0, 0)
    cache.window("a", stored, np.array([0, 0, 64]), (64, 64, 128), 0)    # chunks (0, 0, 1), (0, 0, 2)
    cache.window("a", stored, np.array([0, 0, 0]), (1, 1, 1), 0)        # (0, 0, 0) used again
    for x in range(0, 128, 64):                                          # 4 more full chunks
        for y in range(0, 128, 64):
            cache.window("a", stored, np.array([64, y, x]), (64, 64, 64), 0)
    assert cache.bytes <= cache.max_bytes
    assert len(cache) == 5
    assert ("a", (0, 0, 0)) in cache and ("a", (0, 0, 1)) not in cache
    window = cache.window("a", stored, np.array([0, 0, 64]), (64, 64, 64), 0)
    assert np.array_equal(window, data[:64, :64, 64:128])


def test_catalog_with_a_cache_reads_only_the_chunks_it_needs(tmp_path):
    from catalog.writer import consolidate, write_part, write_shard
    from tests.catalog.test_catalog import image_row, mask_row

    rng = np.random.default_rng(0)
    image = rng.integers(-1000, 1000, size=(150, 140, 200)).astype(np.int16)
    write_shard(tmp_path, "shards/D/a.zarr", image, (image > 900).astype(np.uint8), {})
    write_part(tmp_path, "D__a", [image_row("a", "shards/D/a.zarr")], [mask_row("a", 1)])
    consolidate(tmp_path)
    for path in sorted((tmp_path / "shards/D/a.zarr/image/c").rglob("*")):
        if path.is_file() and path.relative_to(tmp_path / "shards/D/a.zarr/image/c").parts != ("0", "0", "0"):
            path.unlink()
    catalog = Catalog(tmp_path, chunk_cache_bytes=32 << 20)
    patch = catalog.read_patch("a", center=(40, 40, 40), size=(64, 64, 64), arrays=("image",))
    assert np.array_equal(patch["image"], image[8:72, 8:72, 8:72])


def test_a_budget_must_be_positive():
    with pytest.raises(ValueError, match="positive byte budget"):
        ChunkCache(0)


def test_windows_written_into_given_buffers_equal_fresh_ones(array):
    stored, _ = array
    cache = ChunkCache(64 << 20)
    buffer = np.full((40, 50, 60), 123, dtype=np.int16)
    for start in (np.array([10, 20, 30]), np.array([-15, 120, 170]), np.array([200, 0, 0])):
        expected = read_window(stored, start, (40, 50, 60), -7)
        assert cache.window("a", stored, start, (40, 50, 60), -7, out=buffer) is buffer
        assert np.array_equal(buffer, expected)
        assert np.array_equal(read_window(stored, start, (40, 50, 60), -7, out=buffer), expected)
    flipped = np.flip(buffer, (0, 2))  # a flipped view receives the window, so the buffer holds it flipped
    cache.window("a", stored, np.array([5, 5, 5]), (40, 50, 60), 0, out=flipped)
    assert np.array_equal(buffer, np.flip(read_window(stored, np.array([5, 5, 5]), (40, 50, 60), 0), (0, 2)))
    with pytest.raises(ValueError, match="window buffer"):
        cache.window("a", stored, np.array([0, 0, 0]), (40, 50, 61), 0, out=buffer)
    with pytest.raises(ValueError, match="window buffer"):
        read_window(stored, np.array([0, 0, 0]), (40, 50, 60), 0, out=buffer.astype(np.float32))
