"""A per-process cache of decoded Zarr chunks, for patch reads that revisit the same images.

Training draws one 128³ patch per mask, and the masks of an image share it: the 57 masks of a 61-label CT
all read windows of one image, each overlapping up to 27 of its 64³ chunks per array. Decoding a 64³ zstd
chunk costs about 0.3-0.5 ms on one core here, so a cold patch pays 10-15 ms of decoding before any arithmetic;
a cached chunk costs a copy. The cache keeps decoded chunks within a byte budget and drops the least recently
used first. It belongs to one process (each DataLoader worker builds its own) and assumes the shards do not
change while it lives, which holds for a catalog being read: curation replaces a shard only by renaming a new
one into place, and a training job is not run against a catalog being curated.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict

import numpy as np

ChunkKey = tuple[str, tuple[int, ...]]


class ChunkCache:
    """Decoded chunks of Zarr arrays, least recently used out first, at most `max_bytes` in all.

    Args:
        max_bytes (int): budget for the decoded chunks (> 0). A window needs up to 27 chunks per array
            (for 64³ chunks and a 128³ window: 14 MiB of int16); a smaller budget still gives correct
            windows but caches little.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError(f"the chunk cache needs a positive byte budget, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._chunks: OrderedDict[ChunkKey, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self._chunks)

    def __contains__(self, key: ChunkKey) -> bool:
        """Whether (array key, chunk grid index) is decoded in the cache."""
        return key in self._chunks

    def window(
        self,
        key: str,
        array,
        start: np.ndarray,
        size: tuple[int, int, int],
        pad_value: float,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """`array[start : start + size]` for any start, `pad_value` outside the array, through the cache.

        Args:
            key (str): names the array among all arrays this cache serves (e.g. "<image_id>/image").
            array: a Zarr array (or anything with shape, dtype, chunks and basic slicing), axes (z, y, x).
            start (ndarray): (3,) int first voxel of the window; may lie outside the array.
            size (tuple[int, int, int]): window shape in voxels.
            pad_value (float): value of the window outside the array.
            out (ndarray | None): where to write the window (shape `size`, the array's dtype), e.g. a buffer
                reused from patch to patch; None allocates one.

        Returns:
            ndarray of `size` and the array's dtype: `out`, or a new array (the cache keeps its own chunks).
        """
        start = np.asarray(start, dtype=int)
        low, high, out = prepare_window(array, start, size, pad_value, out)
        if not np.all(high > low):
            return out
        chunk = np.asarray(array.chunks)
        first, last = low // chunk, (high - 1) // chunk
        grid = list(itertools.product(*(range(int(a), int(b) + 1) for a, b in zip(first, last))))
        missing = [index for index in grid if (key, index) not in self._chunks]
        if missing:
            self.misses += len(missing)
            self._decode(key, array, np.asarray(missing), chunk)
        self.hits += len(grid) - len(missing)
        for index in grid:
            block = self._chunks[(key, index)]
            self._chunks.move_to_end((key, index))
            origin = np.asarray(index) * chunk
            a = np.maximum(low, origin)
            b = np.minimum(high, origin + block.shape)
            out[tuple(slice(int(i - s), int(j - s)) for i, j, s in zip(a, b, start))] = block[
                tuple(slice(int(i - o), int(j - o)) for i, j, o in zip(a, b, origin))
            ]
        self._evict()
        return out

    def _decode(self, key: str, array, missing: np.ndarray, chunk: np.ndarray) -> None:
        # One Zarr request for the box around the missing chunks (fewer calls than one per chunk); a
        # chunk of the box decoded before is decoded again but not stored twice.
        first, last = missing.min(axis=0), missing.max(axis=0)
        box_low = first * chunk
        box_high = np.minimum((last + 1) * chunk, array.shape)
        box = np.asarray(array[tuple(slice(int(a), int(b)) for a, b in zip(box_low, box_high))])
        for index in itertools.product(*(range(int(a), int(b) + 1) for a, b in zip(first, last))):
            if (key, index) in self._chunks:
                continue
            origin = np.asarray(index) * chunk - box_low
            block = box[tuple(slice(int(o), int(o + c)) for o, c in zip(origin, chunk))].copy()
            self._chunks[(key, index)] = block
            self.bytes += block.nbytes

    def _evict(self) -> None:
        while self.bytes > self.max_bytes and self._chunks:
            _, block = self._chunks.popitem(last=False)
            self.bytes -= block.nbytes


def prepare_window(
    array, start: np.ndarray, size: tuple[int, int, int], pad_value: float, out: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(low, high, out) for the window of `size` at (3,) int `start` of `array`: the window clipped to the
    array (first voxel, exclusive end), and `out` checked to hold the window (or a new array), already set
    to `pad_value` wherever the window leaves the array."""
    shape = np.asarray(array.shape)
    stop = start + np.asarray(size)
    low, high = np.clip(start, 0, shape), np.clip(stop, 0, shape)
    if out is None:
        out = np.empty(tuple(size), dtype=array.dtype)
    elif out.shape != tuple(size) or out.dtype != array.dtype:
        raise ValueError(f"window buffer is {out.dtype}{out.shape}, the window {np.dtype(array.dtype)}{tuple(size)}")
    if not (np.all(low == start) and np.all(high == stop)):
        out.fill(pad_value)
    return low, high, out
