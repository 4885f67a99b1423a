"""One case through all curation steps (`pipeline.steps`): meta filter, mask cleaning, label quality,
left/right split, resampling.

`curate_case` never raises for bad input: every problem becomes a rejected row with a reason, and the
other channels and masks of the case are kept when they can be. Its output (rows + stored arrays) is
what the catalog writer persists; nothing here touches Zarr or Prefect. Steps 2-4 on the label map are
in `pipeline.case_masks`, the catalog rows in `pipeline.catalog_rows`.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from pipeline.case_masks import OVERLAPPING_MASKS, CaseMask, clean_and_split, store_label, unprocessed_masks
from pipeline.catalog_rows import image_row, mask_row, shard_path, source_hashes
from pipeline.config import CurationConfig
from pipeline.fingerprint import slice_signature, store_and_hash, stored_image_sha256
from pipeline.geometry import Geometry
from pipeline.io import HeaderInfo, UnreadableFileError, read_header, read_label_map, read_volume
from pipeline.label_masks import merge_binary_masks
from pipeline.records import CaseRecord, ChannelSource
from pipeline.steps.step1_meta_filter import check_image_header, check_label_matches_image
from pipeline.steps.step2_mask_cleaning import find_components
from pipeline.steps.step5_resample import (
    ResampledGrid,
    ScratchOutputs,
    output_voxels,
    resample_image,
    target_grid,
)
from pipeline.vocabulary import Vocabulary, default_vocabulary

# Output buffers of the images' resampling, reused across cases (see ScratchOutputs).
_SCRATCH = ScratchOutputs()


@dataclass
class CuratedImage:
    """One catalog image: its row, and for kept images the stored (z, y, x) arrays and grid."""

    row: dict
    image: np.ndarray | None = None
    label: np.ndarray | None = None
    geometry: Geometry | None = None


@dataclass
class CaseResult:
    images: list[CuratedImage]
    masks: list[dict]


def curate_case(
    case: CaseRecord,
    config: CurationConfig,
    *,
    channels: list[int] | None = None,
    hashes: dict[str, str | None] | None = None,
    vocabulary: Vocabulary | None = None,
) -> CaseResult:
    """Curate the given channels (default: all) of one case. Never raises for bad input."""
    vocabulary = vocabulary or default_vocabulary()
    hashes = hashes if hashes is not None else source_hashes(case)
    selected = [c for c in case.channels if channels is None or c.index in channels]
    headers: dict[int, HeaderInfo] = {}
    reasons: dict[int, str] = {}

    label_header, label_problem = None, None
    if case.problems:
        label_problem = "; ".join(case.problems)
    else:
        try:
            label_header = read_header(case.label_path)
        except UnreadableFileError as error:
            label_problem = f"label map unreadable: {error}"
    for channel in selected:
        if label_problem:
            reasons[channel.index] = label_problem
            continue
        try:
            headers[channel.index] = read_header(channel.path, channel.component)
        except UnreadableFileError as error:
            reasons[channel.index] = f"image unreadable: {error}"
            continue
        reason = check_image_header(headers[channel.index], config) or check_label_matches_image(
            headers[channel.index], label_header, config
        )
        if reason:
            reasons[channel.index] = reason

    masks: list[CaseMask] = []
    arrays: dict[int, sitk.Image] = {}
    flags: list[str] = []
    side_check = None
    plane = None
    if any(c.index not in reasons for c in selected):
        # The images' reads, resampling and fingerprints do not depend on the label map: a thread does them
        # on the grid the label header promises while this one reads, cleans and splits the label map
        # (torch, NumPy and hashlib release the GIL). Their results are used only if the label map is fine
        # and has that grid.
        wanted = [c for c in selected if c.index not in reasons]
        promised = _grid_of_header(label_header, config)
        with ThreadPoolExecutor(max_workers=1) as pool, ThreadPoolExecutor(max_workers=1) as hashing:
            reads = {c.index: pool.submit(_read_image, c) for c in wanted}
            early = {}
            if promised is not None:
                early = {
                    c.index: pool.submit(_stored_image_of_read, reads[c.index], promised, hashing) for c in wanted
                }
            try:
                label_image, overlap_voxels = _read_label(case, label_header)
                label_array, problem = _integer_labels(sitk.GetArrayFromImage(label_image))
            except UnreadableFileError as error:
                label_array, problem = None, f"label map unreadable: {error}"
            if problem:
                for future in [*reads.values(), *early.values()]:
                    future.cancel()
                for channel in selected:
                    reasons.setdefault(channel.index, problem)
            else:
                # The component pass needs no image: it runs while the thread still reads them.
                table = find_components(label_array, config.connectivity)
                for channel in wanted:
                    image, reason = reads[channel.index].result()
                    if reason:
                        reasons[channel.index] = reason
                    else:
                        arrays[channel.index] = image
            if arrays:
                reference = arrays[min(arrays)]
                reference_modality = next(c.modality for c in selected if c.index == min(arrays))
                grid = target_grid(Geometry.of(label_image), label_array.shape, config.target_spacing_mm)
                if grid != promised:  # the full read disagrees with its header: resample on the real grid
                    for future in early.values():
                        future.cancel()
                    early = {index: pool.submit(_stored_image, image, grid, hashing) for index, image in arrays.items()}
                masks, final_map, flags, side_check, plane = clean_and_split(
                    case, label_array, label_image, table, reference, reference_modality, config, vocabulary
                )
                if overlap_voxels:
                    flags.append(OVERLAPPING_MASKS)
                stored_label = store_label(final_map, grid, masks, config)
                label_sha256 = stored_image_sha256(stored_label)
                stored_images = {index: early[index].result() for index in arrays}

    if not masks:
        masks = unprocessed_masks(case, vocabulary)

    result = CaseResult(images=[], masks=[])
    for channel in selected:
        image_id = case.image_id(channel)
        header = headers.get(channel.index)
        row = image_row(case, channel, header, hashes, config)
        curated = CuratedImage(row=row)
        if channel.index in arrays:
            curated.image, signature, patient_shape, stored_sha256 = stored_images[channel.index]
            curated.label = stored_label
            curated.geometry = grid.geometry
            row.update(
                status="kept",
                stored_sha256=stored_sha256,
                similarity_signature=signature.ravel().tolist(),
                canonical_shape_spl=list(patient_shape),
                stored_shape_zyx=list(curated.image.shape),
                stored_spacing_xyz=list(curated.geometry.spacing_xyz),
                stored_origin_xyz=list(curated.geometry.origin_xyz),
                stored_direction=list(curated.geometry.direction),
                stored_dtype=str(curated.image.dtype),
                shard_path=shard_path(case.dataset, image_id, stored_sha256, label_sha256),
                flags=sorted(flags),
                side_pairs=side_check.pairs,
                side_pairs_disagreeing=list(side_check.disagreeing),
                midline_x_mm=plane.x_mm if plane else None,
                midline_source=plane.source if plane else None,
                midline_score=plane.score if plane else None,
            )
        else:
            row.update(status="rejected", reason=reasons.get(channel.index, "not processed"))
        row["masks_total"] = len(masks)
        row["masks_kept"] = sum(m.status == "kept" for m in masks) if row["status"] == "kept" else 0
        result.images.append(curated)
        image_reason = None if row["status"] == "kept" else f"image rejected: {row['reason']}"
        for index, mask in enumerate(masks):
            result.masks.append(mask_row(case, channel, image_id, index, mask, image_reason, config))
    return result


def _grid_of_header(header: HeaderInfo | None, config: CurationConfig) -> ResampledGrid | None:
    """The stored grid of a 3D label map as its header describes it (None without a usable header)."""
    if header is None or header.dimension != 3:
        return None
    spacing, origin, direction = (
        tuple(float(v) for v in values) for values in (header.spacing_xyz, header.origin_xyz, header.direction)
    )
    geometry = Geometry(spacing, origin, direction)
    return target_grid(geometry, tuple(int(n) for n in header.size_xyz[::-1]), config.target_spacing_mm)


def _read_image(channel: ChannelSource) -> tuple[sitk.Image | None, str | None]:
    """(image, None) or (None, reason) for a channel whose pixels cannot be used."""
    try:
        image = read_volume(channel.path, channel.component)
    except UnreadableFileError as error:
        return None, f"image unreadable: {error}"
    if not np.isfinite(sitk.GetArrayViewFromImage(image)).all():
        return None, "image contains NaN or infinite voxels"
    return image, None


def _stored_image_of_read(read: Future, grid: ResampledGrid, hashing: ThreadPoolExecutor):
    """`_stored_image` of a finished `_read_image` future; None for an unusable image."""
    image, reason = read.result()
    return None if reason else _stored_image(image, grid, hashing)


def _stored_image(
    image: sitk.Image, grid, hashing: ThreadPoolExecutor
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int], str]:
    """A channel as stored: (resampled (z, y, x) array, slice signature, (S, P, L) shape, stored sha256).
    The sha256 runs on `hashing` while this thread converts the array and computes the signature."""
    source = sitk.GetArrayViewFromImage(image)
    integer = source.dtype.kind in "iu"
    if integer:  # stored as int16, a new array: the float32 resampling can go to a reused buffer
        with _SCRATCH.buffer(output_voxels(source.shape, grid)) as buffer:
            stored, digest = store_and_hash(resample_image(source, grid, out=buffer), integer, hashing, copy=True)
    else:
        stored, digest = store_and_hash(resample_image(source, grid), integer, hashing)
    signature, patient_shape = slice_signature(stored, grid.geometry.direction)
    return stored, signature, patient_shape, digest.result()


def _read_label(case: CaseRecord, header: HeaderInfo | None) -> tuple[sitk.Image, int]:
    """The case's label map and the number of voxels claimed by two mask files (0 for one label map).
    `header`: the label map's header, already read."""
    if case.label_mask_paths:
        merged = merge_binary_masks(case.label_mask_paths)
        return merged.image, merged.overlap_voxels
    return read_label_map(case.label_path, header), 0


def _integer_labels(array: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    """Label map as an integer array, or a reason: NaN, non-integer values, negative values, empty map."""
    if array.dtype.kind == "f":
        with np.errstate(invalid="ignore"):  # NaN has no integer value; caught just below
            as_int = array.astype(np.int32)
        if not np.array_equal(as_int, array):  # NaN compares unequal too; tell the two apart only on failure
            if not np.isfinite(array).all():
                return None, "label map contains NaN or infinite values"
            return None, "label map has non-integer (float) values; expected integer labels"
        array = as_int
    elif array.dtype.kind not in "iub":
        return None, f"label map has unsupported pixel type {array.dtype}"
    if not array.size or not array.any():
        return None, "label map is empty (no labelled voxel)"
    low, high = array.min(), array.max()
    if low < 0:
        return None, "label map has negative values"
    if high > np.iinfo(np.int32).max:
        return None, "label map values exceed the int32 range"
    dtype = np.uint8 if high < 256 else np.uint16 if high < 65536 else np.int32
    return array.astype(dtype, copy=False), None


