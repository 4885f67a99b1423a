"""One case through all curation steps: meta filter, mask cleaning, label quality, left/right split, resampling.

`curate_case` never raises for bad input: every problem becomes a rejected row with a reason, and the
other channels and masks of the case are kept when they can be. Its output (rows + stored arrays) is
what the catalog writer persists; nothing here touches Zarr or Prefect.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from pipeline import __version__ as PIPELINE_VERSION
from pipeline.components import largest_component_ids
from pipeline.config import CurationConfig
from pipeline.fingerprint import slice_signature, store_and_hash
from pipeline.geometry import Geometry
from pipeline.io import HeaderInfo, UnreadableFileError, read_header, read_label_map, read_volume, sha256_of
from pipeline.label_masks import merge_binary_masks
from pipeline.mask_cleaning import MaskStatistics, find_components, mask_statistics, rejection_reason
from pipeline.meta_filter import check_image_header, check_label_matches_image
from pipeline.records import CaseRecord, ChannelSource
from pipeline.resample import (
    ResampledGrid,
    ScratchOutputs,
    output_voxels,
    resample_image,
    resample_labels_with_statistics,
    target_grid,
)
from pipeline.symmetry import (
    SidePiece,
    body_midline_x,
    check_sides,
    field_of_view_centre_x,
    is_paired_structure,
    split_components_by_side,
)
from pipeline.vocabulary import Vocabulary, default_vocabulary, parse_label_name, with_side

ORIENTATION_SUSPECT = "orientation_suspect"
MIDLINE_FROM_FIELD_OF_VIEW = "midline_from_field_of_view"
OVERLAPPING_MASKS = "overlapping_masks"


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


@dataclass
class _Mask:
    """A mask of the case, shared by all its channels; becomes one row per kept-or-rejected image."""

    source_label: int
    source_name: str
    base: str
    side: str | None
    side_source: str | None
    group: str
    status: str = "kept"
    reason: str | None = None
    pieces: list[SidePiece] | None = None  # for split halves: this side's pieces of the source mask
    stats: MaskStatistics | None = None
    source_voxels: int = 0
    voxels: int = 0
    removed_voxels: int = 0
    volume_ml: float = 0.0
    top_sizes: list[int] = field(default_factory=list)
    other_voxels: int = 0
    components: int = 0
    bg_fraction_bbox: float | None = None
    bg_fraction_volume: float | None = None
    centroid_world: list[float] | None = None
    label_value: int = 0
    stored_voxels: int = 0
    stored_bbox: list[int] | None = None

    @property
    def category(self) -> str:
        return with_side(self.base, self.side) if self.side else self.base

    def reject(self, reason: str) -> None:
        if self.status == "kept":
            self.status, self.reason = "rejected", reason


def source_hashes(case: CaseRecord) -> dict[str, str | None]:
    """sha256 of each existing source of the case, keyed by path (missing files map to None).

    A DICOM series folder hashes its files. For labels split over several mask files, the key of
    `label_path` maps to the sha256 of all of them (their sha256s in label value order), so a changed
    mask file makes the case stale like a changed label map would.
    """
    paths = [c.path for c in case.channels] + ([case.label_path] if case.label_path else [])
    hashes = {str(p): (sha256_of(p) if p.exists() else None) for p in paths}
    if case.label_mask_paths:
        parts = [(v, p, sha256_of(p) if p.is_file() else None) for v, p in sorted(case.label_mask_paths.items())]
        combined = None
        if all(sha for _, _, sha in parts):
            combined = sha256_text("".join(f"{v}:{p.name}:{sha}\n" for v, p, sha in parts))
        hashes[str(case.label_path)] = combined
    return hashes


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


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

    masks: list[_Mask] = []
    arrays: dict[int, sitk.Image] = {}
    flags: list[str] = []
    side_check = None
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
                masks, final_map, flags, side_check = _clean_and_split(
                    case, label_array, label_image, table, reference, reference_modality, config, vocabulary
                )
                if overlap_voxels:
                    flags.append(OVERLAPPING_MASKS)
                stored_label = _store_label(final_map, grid, masks, config)
                stored_images = {index: early[index].result() for index in arrays}

    if not masks:
        masks = _unprocessed_masks(case, vocabulary)

    result = CaseResult(images=[], masks=[])
    for channel in selected:
        image_id = case.image_id(channel)
        header = headers.get(channel.index)
        row = _image_row(case, channel, header, hashes, config)
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
                shard_path=f"shards/{case.dataset}/{image_id}.zarr",
                flags=sorted(flags),
                side_pairs=side_check.pairs,
                side_pairs_disagreeing=list(side_check.disagreeing),
            )
        else:
            row.update(status="rejected", reason=reasons.get(channel.index, "not processed"))
        row["masks_total"] = len(masks)
        row["masks_kept"] = sum(m.status == "kept" for m in masks) if row["status"] == "kept" else 0
        result.images.append(curated)
        image_reason = None if row["status"] == "kept" else f"image rejected: {row['reason']}"
        for index, mask in enumerate(masks):
            result.masks.append(_mask_row(case, channel, image_id, index, mask, image_reason, config))
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


def _unprocessed_masks(case: CaseRecord, vocabulary: Vocabulary) -> list[_Mask]:
    """Masks named by the dataset, for rows of images whose voxels were never read."""
    masks = []
    for value, name in sorted(case.label_names.items()):
        parsed = parse_label_name(name)
        masks.append(
            _Mask(value, name, parsed.base, parsed.side, "dataset" if parsed.side else None,
                  vocabulary.group_of(parsed.base), status="rejected", reason="not processed")
        )
    return masks


def _clean_and_split(case, label_array, label_image, table, reference, modality, config, vocabulary):
    """Steps 2-4 on the source grid, from the label map's component `table` (`find_components`).
    Returns masks, the final (z, y, x) map of mask values, flags, side check."""
    geometry = Geometry.of(label_image)
    voxel_mm3 = float(np.prod(geometry.spacing_xyz))
    statistics = mask_statistics(table)
    names = dict(case.label_names)
    for value in statistics:
        names.setdefault(value, f"label {value}")

    flags = []
    midline = None
    masks: list[_Mask] = []
    for value, name in sorted(names.items()):
        parsed = parse_label_name(name)
        group = vocabulary.group_of(parsed.base)
        stats = statistics.get(value)
        if stats is None:
            masks.append(_Mask(value, name, parsed.base, parsed.side, "dataset" if parsed.side else None, group,
                               status="rejected", reason=f"label value {value} absent from the label map"))
            continue
        # Paired structures are split first and judged per side: over the bounding box of a merged pair
        # (two ribs, say) the background fraction says nothing about either side's quality.
        if parsed.side is None and is_paired_structure(parsed.base, config.paired_structures):
            if midline is None:
                midline = body_midline_x(reference, modality)
                if midline is None:
                    midline = field_of_view_centre_x(label_array.shape, geometry)
                    flags.append(MIDLINE_FROM_FIELD_OF_VIEW)
            pieces = split_components_by_side(table, stats.component_ids, geometry, midline, config.straddle_fraction)
            for side in ("left", "right"):
                side_pieces = [p for p in pieces if p.side == side]
                if side_pieces:
                    masks.append(_Mask(value, name, parsed.base, side, "split", group, pieces=side_pieces))
            continue
        masks.append(
            _Mask(value, name, parsed.base, parsed.side, "dataset" if parsed.side else None, group, stats=stats)
        )

    lut = np.zeros(table.count + 1, dtype=np.uint16)
    cut_pieces: list[tuple[SidePiece, int]] = []
    k = config.keep_largest_components
    # A mask's value is its position in the case's mask list (1-based), kept or not, so a threshold
    # change that flips one mask leaves every other mask's value, and catalog row, as it was.
    for position, mask in enumerate(masks, start=1):
        if mask.pieces is not None:
            _summarise_pieces(mask, mask.pieces, k, label_array.size)
        elif mask.stats is not None:
            _summarise_stats(mask, mask.stats, k)
        if mask.status == "kept":
            reason = rejection_reason(
                mask.source_voxels, mask.bg_fraction_bbox, mask.bg_fraction_volume, voxel_mm3, config
            )
            if reason:
                split_note = f"{mask.side} side after the left/right split: " if mask.side_source == "split" else ""
                mask.reject(split_note + reason)
        mask.volume_ml = mask.voxels * voxel_mm3 / 1000.0
        if mask.status != "kept":
            continue
        mask.label_value = position
        if mask.pieces is not None:
            for piece in _largest_pieces(mask.pieces, k):
                if piece.cut:
                    cut_pieces.append((piece, mask.label_value))
                else:
                    lut[piece.component] = mask.label_value
        else:
            lut[largest_component_ids(mask.stats, k)] = mask.label_value
    final_map = lut[table.components]
    for piece, value in cut_pieces:
        z0, z1, y0, y1, x0, x1 = (int(v) for v in table.bbox[piece.component])
        box = (slice(z0, z1 + 1), slice(y0, y1 + 1), slice(x0, x1 + 1))
        on_left = geometry.world_x_of_box(z0, z1 + 1, y0, y1 + 1, x0, x1 + 1) > midline
        on_side = on_left if piece.side == "left" else ~on_left
        final_map[box][(table.components[box] == piece.component) & on_side] = value

    kept = [m for m in masks if m.status == "kept"]
    for mask in kept:
        if mask.pieces is not None:
            chosen = _largest_pieces(mask.pieces, k)
            weights = np.array([p.voxels for p in chosen], dtype=float)
            centroids = np.array([p.centroid_zyx for p in chosen])
        else:
            ids = largest_component_ids(mask.stats, k)
            weights, centroids = table.voxels[ids].astype(float), table.centroid_zyx[ids]
        centroid_zyx = weights @ centroids / weights.sum()
        mask.centroid_world = [float(v) for v in geometry.index_zyx_to_world(centroid_zyx)]
    side_check = check_sides({m.category: np.asarray(m.centroid_world) for m in kept})
    if side_check.suspect:
        flags.append(ORIENTATION_SUSPECT)
    return masks, final_map, flags, side_check


def _largest_pieces(pieces: list[SidePiece], k: int) -> list[SidePiece]:
    return sorted(pieces, key=lambda p: (-p.voxels, p.component))[:k]


def _summarise_stats(mask: _Mask, stats: MaskStatistics, k: int) -> None:
    mask.source_voxels = stats.voxels
    mask.top_sizes = stats.top_sizes(k)
    mask.other_voxels = stats.other_voxels(k)
    mask.components = len(stats.component_ids)
    mask.voxels = sum(mask.top_sizes)
    mask.removed_voxels = mask.other_voxels
    mask.bg_fraction_bbox = stats.bg_fraction_bbox
    mask.bg_fraction_volume = stats.bg_fraction_volume


def _summarise_pieces(mask: _Mask, pieces: list[SidePiece], k: int, total_voxels: int) -> None:
    """Statistics of one side of a split mask, from its pieces (whole components or cut halves)."""
    sizes = sorted((p.voxels for p in pieces), reverse=True)
    boxes = np.asarray([p.bbox for p in pieces])
    box_volume = int(np.prod(boxes[:, 1::2].max(axis=0) - boxes[:, 0::2].min(axis=0) + 1))
    mask.source_voxels = int(sum(sizes))
    mask.top_sizes = [int(s) for s in sizes[:k]]
    mask.other_voxels = int(sum(sizes[k:]))
    mask.components = len(sizes)
    mask.voxels = sum(mask.top_sizes)
    mask.removed_voxels = mask.other_voxels
    mask.bg_fraction_bbox = 1.0 - mask.source_voxels / box_volume
    mask.bg_fraction_volume = 1.0 - mask.source_voxels / total_voxels


def _store_label(final_map: np.ndarray, grid, masks: list[_Mask], config) -> np.ndarray:
    """Resample the final mask map (nearest) to the target grid and record stored voxels and boxes."""
    dtype = np.uint8 if len(masks) < 256 else np.uint16
    final_map = final_map.astype(dtype, copy=False)
    stored, counts, boxes = resample_labels_with_statistics(final_map, grid, len(masks) + 1)
    for mask in masks:
        if mask.status != "kept":
            continue
        voxels = int(counts[mask.label_value])
        if voxels == 0:
            mask.reject(f"vanished when resampled to {config.target_spacing_mm} mm")
            continue
        z0, z1, y0, y1, x0, x1 = (int(v) for v in boxes[mask.label_value])
        mask.stored_voxels = voxels
        mask.stored_bbox = [z0, y0, x0, z1 + 1, y1 + 1, x1 + 1]
    return stored


def _image_row(case: CaseRecord, channel: ChannelSource, header, hashes, config) -> dict:
    image_sha = hashes.get(str(channel.path))
    label_sha = hashes.get(str(case.label_path)) if case.label_path else None
    return {
        "image_id": case.image_id(channel),
        "dataset": case.dataset,
        "case_id": case.case_id,
        "channel": channel.index,
        "channel_name": channel.name,
        "modality": channel.modality,
        "synthetic": case.synthetic,
        "image_path": str(channel.path),
        "label_path": str(case.label_path) if case.label_path else None,
        "image_sha256": image_sha,
        "label_sha256": label_sha,
        "source_hash": source_hash(image_sha, label_sha),
        "original_size_xyz": list(header.size_xyz) if header else None,
        "original_spacing_xyz": list(header.spacing_xyz) if header else None,
        "original_origin_xyz": list(header.origin_xyz) if header else None,
        "original_direction": list(header.direction) if header else None,
        "orientation": header.orientation if header else None,
        "extent_mm_xyz": list(header.extent_mm_xyz) if header else None,
        "volume_cm3": header.volume_cm3 if header else None,
        "pixel_type": header.pixel_type if header else None,
        "stored_shape_zyx": None,
        "stored_spacing_xyz": None,
        "stored_origin_xyz": None,
        "stored_direction": None,
        "stored_dtype": None,
        "stored_sha256": None,
        "similarity_signature": None,
        "canonical_shape_spl": None,
        "shard_path": None,
        "status": None,
        "reason": None,
        "flags": [],
        "side_pairs": 0,
        "side_pairs_disagreeing": [],
        "split": None,  # assigned over the whole catalog when the tables are written (catalog.splits)
        "duplicate_group": None,
        "pipeline_version": PIPELINE_VERSION,
        "config_hash": config.config_hash(),
    }


def source_hash(image_sha: str | None, label_sha: str | None) -> str:
    return f"{image_sha or 'missing'}:{label_sha or 'missing'}"


def _mask_row(case, channel, image_id, index, mask: _Mask, image_reason, config) -> dict:
    status, reason = mask.status, mask.reason
    if image_reason:
        status, reason = "rejected", image_reason
    return {
        "mask_id": f"{image_id}__{index:03d}",
        "image_id": image_id,
        "dataset": case.dataset,
        "case_id": case.case_id,
        "modality": channel.modality,
        "category": mask.category,
        "base_category": mask.base,
        "group": mask.group,
        "side": mask.side,
        "side_source": mask.side_source,
        "source_label": mask.source_label,
        "source_name": mask.source_name,
        "label_value": mask.label_value if status == "kept" else 0,
        "status": status,
        "reason": reason,
        "source_voxels": mask.source_voxels,
        "voxels": mask.voxels,
        "volume_ml": mask.volume_ml,
        "removed_voxels": mask.removed_voxels,
        "n_components": mask.components,
        "top_component_sizes": mask.top_sizes,
        "other_components_voxels": mask.other_voxels,
        "bg_fraction_bbox": mask.bg_fraction_bbox,
        "bg_fraction_volume": mask.bg_fraction_volume,
        "centroid_world_xyz": mask.centroid_world,
        "stored_voxels": mask.stored_voxels if status == "kept" else 0,
        "bbox_zyx": mask.stored_bbox if status == "kept" else None,
        "split": None,  # assigned over the whole catalog when the tables are written (catalog.splits)
        "config_hash": config.config_hash(),
    }
