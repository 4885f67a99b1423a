"""Training samples from the catalog: mask selection, 128³ patches (normalised by `model.intensity`).

A sample is one catalog mask: a P³ patch of its image at the stored spacing (1.5 mm by default) that holds
the mask's bounding box at a random position (jittered, not centred), zero-padded where it leaves the image,
randomly flipped, with the binary target of that mask. Arrays are (z, y, x); patch starts are stored-grid
voxel indices.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, get_worker_info

from catalog.reader import Catalog
from model.intensity import normalize_into, thread_buffer
from model.targets import patch_start

# dtypes a PatchDataset may give its normalised images, by name (TrainConfig.patch_image_dtype).
IMAGE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}

# Columns a PatchDataset needs from a mask table (select_masks returns them).
SAMPLE_COLUMNS = ("mask_id", "image_id", "modality", "label_value", "bbox_zyx")


class PatchDataset(Dataset):
    """One training sample per catalog mask; one batch per list of keys.

    Args:
        catalog_root (str | Path): catalog folder or s3:// URL.
        masks (DataFrame): rows from :func:`model.targets.select_masks` (needs SAMPLE_COLUMNS).
        patch_size (int): patch edge P in stored voxels (128 for the network).
        jitter (bool): place the mask's box at a random position in the patch; False centres it.
        flips (bool): flip each axis with probability 0.5.
        min_voxels (int): a crop holding fewer mask voxels is drawn again (when the mask is larger
            than the patch), up to max_tries times; then the try with the most mask voxels is used.
        seed (int): with the epoch and the index, fixes every random choice of a sample.
        max_tries (int): crops drawn at most per sample.
        cache_mb (int): MiB of decoded Zarr chunks each process keeps (:class:`catalog.chunk_cache.ChunkCache`),
            so the masks of one image share its decoding; 0 decodes every patch afresh. Each DataLoader
            worker holds its own cache.
        image_dtype (torch.dtype): dtype of the normalised image, float32 by default. float16 halves what
            a DataLoader worker hands over (the trainer's choice): the z-scores, a few units, keep about 3.3
            significant digits (bf16 autocast keeps fewer anyway). bfloat16 is accepted too.
        pack_labels (bool): hand labels over as bits, 8 voxels of x per byte (an eighth of the bytes; see
            :func:`unpack_labels`). Needs a patch size divisible by 8.

    Item ``dataset[i]`` (or ``dataset[(epoch, i)]``) is a dict:
        image (Tensor): (1, P, P, P) `image_dtype`, intensities normalised by
            :func:`model.intensity.normalize_intensity`.
        label (ByteTensor): (1, P, P, P) uint8, 1 inside the mask, 0 elsewhere; with `pack_labels`,
            (1, P, P, P // 8) uint8 bits (:func:`unpack_labels` restores the mask, on the device in training).
        mask_id (str): the catalog mask.
        start (LongTensor): (3,) stored (z, y, x) index of the patch's first voxel, before flips.
        flipped (BoolTensor): (3,) whether the z, y, x axes were flipped.
        epoch (int), index (int): which draw this is.

    ``dataset[[key, key, ...]]`` (keys as above) is the batch of those samples, as the default collate would
    stack them: image (B, 1, P, P, P), label (B, 1, P, P, P or P // 8), mask_id (list of B str), start
    (B, 3), flipped (B, 3), epoch (B,), index (B,). Each sample is written straight into the batch, which a
    DataLoader worker allocates in shared memory: nothing is copied again to hand it over. Use it with
    ``DataLoader(dataset, sampler=<iterable of key lists>, batch_size=None)``, or, as the trainer does,
    :class:`model.training.patch_loader.PatchBatchLoader`, whose workers write into slots allocated once.

    ``dataset[(epoch, i)]`` draws sample i of that epoch whatever :meth:`set_epoch` said, so one
    DataLoader, its workers started once, can run over many epochs.

    Shards are opened lazily, once per process, so DataLoader workers each hold their own handles.
    ``dataset[i]`` uses the epoch of :meth:`set_epoch` (workers get a copy when the iterator starts).
    """

    def __init__(
        self,
        catalog_root: str | Path,
        masks: pd.DataFrame,
        *,
        patch_size: int = 128,
        jitter: bool = True,
        flips: bool = True,
        min_voxels: int = 1000,
        seed: int = 0,
        max_tries: int = 10,
        cache_mb: int = 512,
        image_dtype: torch.dtype = torch.float32,
        pack_labels: bool = False,
    ) -> None:
        missing = [c for c in SAMPLE_COLUMNS if c not in masks.columns]
        if missing:
            raise ValueError(f"mask table lacks columns {missing}; build it with select_masks")
        if max_tries < 1:
            raise ValueError(f"max_tries must be at least 1, got {max_tries}")
        if cache_mb < 0:
            raise ValueError(f"cache_mb must be >= 0, got {cache_mb}")
        if image_dtype not in IMAGE_DTYPES.values():
            raise ValueError(f"image_dtype must be one of {sorted(IMAGE_DTYPES)}, got {image_dtype}")
        if pack_labels and patch_size % 8:
            raise ValueError(f"packed labels need a patch size divisible by 8, got {patch_size}")
        self.catalog_root = catalog_root
        self.mask_ids = [str(v) for v in masks.mask_id]
        self.image_ids = [str(v) for v in masks.image_id]
        self.modalities = [str(v) for v in masks.modality]
        self.label_values = [int(v) for v in masks.label_value]
        self.bboxes = [np.asarray(v, dtype=np.int64) for v in masks.bbox_zyx]
        self.patch_size = int(patch_size)
        self.jitter = jitter
        self.flips = flips
        self.min_voxels = int(min_voxels)
        self.seed = int(seed)
        self.max_tries = int(max_tries)
        self.cache_mb = int(cache_mb)
        self.image_dtype = image_dtype
        self.pack_labels = bool(pack_labels)
        self.epoch = 0
        self._catalog: Catalog | None = None
        self._catalog_pid: int | None = None

    def set_epoch(self, epoch: int) -> None:
        """Draw the crops and flips of epoch ``epoch`` from now on."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.mask_ids)

    def __getstate__(self) -> dict:
        # Zarr handles stay in the process that opened them; a worker opens its own.
        state = dict(self.__dict__)
        state["_catalog"] = None
        state["_catalog_pid"] = None
        return state

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None or self._catalog_pid != os.getpid():
            self._catalog = Catalog(self.catalog_root, chunk_cache_bytes=self.cache_mb << 20)
            self._catalog_pid = os.getpid()
        return self._catalog

    def __getitem__(self, key: int | tuple[int, int] | list) -> dict:
        if isinstance(key, list):
            return self.batch(key)
        epoch, index = self._epoch_and_index(key)
        image, label = self.batch_tensors(1)
        start, flipped = self._draw(epoch, index, image[0, 0], label[0, 0])
        return {
            "image": image[0],
            "label": label[0],
            "mask_id": self.mask_ids[index],
            "start": torch.from_numpy(start),
            "flipped": torch.from_numpy(flipped),
            "epoch": epoch,
            "index": index,
        }

    def batch(self, keys: list[int | tuple[int, int]]) -> dict:
        """The samples of `keys` stacked (see the class docstring), in shared memory on a DataLoader worker."""
        image, label = self.batch_tensors(len(keys), shared=get_worker_info() is not None)
        return {"image": image, "label": label, **self.fill(keys, image, label)}

    def batch_tensors(self, count: int, shared: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Uninitialised image (count, 1, P, P, P) and label (count, 1, P, P, P or P // 8) tensors in this
        dataset's format; `shared` places them in shared memory (before anything is written: moving a
        written tensor there would copy it)."""
        shape = (count, 1) + (self.patch_size,) * 3
        label_shape = shape[:-1] + (self.patch_size // 8,) if self.pack_labels else shape
        image, label = torch.empty(shape, dtype=self.image_dtype), torch.empty(label_shape, dtype=torch.uint8)
        if shared:
            image.share_memory_()
            label.share_memory_()
        return image, label

    def fill(self, keys: list[int | tuple[int, int]], image: torch.Tensor, label: torch.Tensor) -> dict:
        """Draw the samples of `keys` into ``image[i, 0]`` and ``label[i, 0]`` (tensors of
        :meth:`batch_tensors`, at least ``len(keys)`` long).

        Returns:
            dict: the batch's mask_id (list of str), start (B, 3), flipped (B, 3), epoch (B,), index (B,).
        """
        draws = [self._epoch_and_index(key) for key in keys]
        if len(draws) > min(len(image), len(label)):
            raise ValueError(f"{len(draws)} samples do not fit tensors for {min(len(image), len(label))}")
        starts, flips = [], []
        for slot, (epoch, index) in enumerate(draws):
            start, flipped = self._draw(epoch, index, image[slot, 0], label[slot, 0])
            starts.append(start)
            flips.append(flipped)
        return {
            "mask_id": [self.mask_ids[index] for _, index in draws],
            "start": torch.from_numpy(np.stack(starts)),
            "flipped": torch.from_numpy(np.stack(flips)),
            "epoch": torch.tensor([epoch for epoch, _ in draws], dtype=torch.int64),
            "index": torch.tensor([index for _, index in draws], dtype=torch.int64),
        }

    def _epoch_and_index(self, key: int | tuple[int, int]) -> tuple[int, int]:
        epoch, index = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (self.epoch, int(key))
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range for {len(self)} samples")
        return epoch, index

    def _draw(self, epoch: int, index: int, image_out: torch.Tensor, label_out: torch.Tensor):
        """Write sample `index` of `epoch` into (P, P, P) `image_out` and uint8 `label_out` ((P, P, P), or
        (P, P, P // 8) bits with `pack_labels`).

        Returns:
            (start (3,) int64 stored index of the patch's first voxel before flips, flipped (3,) bool).
        """
        rng = np.random.default_rng([self.seed, epoch, index])
        size = (self.patch_size,) * 3
        image_id, value = self.image_ids[index], self.label_values[index]
        label_window = {"label": thread_buffer("label window", size, self.catalog.array(image_id, "label").dtype)}
        best, trial = thread_buffer("best target", size, np.bool_), thread_buffer("trial target", size, np.bool_)
        best_start, best_count = None, -1
        for _ in range(self.max_tries):
            start = patch_start(self.bboxes[index], self.patch_size, rng if self.jitter else None)
            center = tuple(int(v) for v in start + self.patch_size // 2)
            window = self.catalog.read_patch(image_id, center, size, arrays=("label",), out=label_window)["label"]
            count = int(np.count_nonzero(np.equal(window, value, out=trial)))
            if count > best_count:
                best_start, best_count, best, trial = start, count, trial, best
            if count >= self.min_voxels or not self.jitter:
                break
        flipped = rng.random(3) < 0.5 if self.flips else np.zeros(3, dtype=bool)
        axes = tuple(int(a) for a in np.flatnonzero(flipped))

        def flip(array: np.ndarray, along: tuple[int, ...] = axes) -> np.ndarray:
            return np.flip(array, along) if along else array

        # The image patch is read into a flipped view of a buffer: the buffer then holds the flipped patch,
        # contiguous for the normalisation (reading a flipped view twice there would cost more).
        image = thread_buffer("image window", size, self.catalog.array(image_id, "image").dtype)
        center = tuple(int(v) for v in best_start + self.patch_size // 2)
        self.catalog.read_patch(image_id, center, size, arrays=("image",), out={"image": flip(image)})

        if self.pack_labels:
            # Packing a view flipped along x is slow; the x flip is instead the packed bytes reversed, each
            # packed with its bits in the opposite order.
            if flipped[2]:
                packed = np.packbits(flip(best, axes[:-1]), axis=-1, bitorder="little")[..., ::-1]
            else:
                packed = np.packbits(flip(best), axis=-1)
            np.copyto(label_out.numpy(), packed)
        else:  # writing into a flipped view flips the label as it is copied
            np.copyto(flip(label_out.numpy().view(np.bool_)), best)
        normalize_into(image, self.modalities[index], image_out)
        return best_start.astype(np.int64), flipped


_BIT_VALUES = (128, 64, 32, 16, 8, 4, 2, 1)


def unpack_labels(packed: torch.Tensor) -> torch.Tensor:
    """Masks from `PatchDataset(pack_labels=True)` labels, on the tensor's own device.

    Args:
        packed (Tensor): (..., X // 8) uint8, bit 7 of byte k holding voxel 8k along x.

    Returns:
        BoolTensor (..., X).
    """
    bits = torch.tensor(_BIT_VALUES, dtype=torch.uint8, device=packed.device)
    return (packed.unsqueeze(-1) & bits).ne(0).flatten(-2)
