"""The catalog rows of one case: images.parquet and masks.parquet records, and the source hashes that
make a rerun skip an unchanged case."""

from __future__ import annotations

import hashlib
import math

from pipeline import __version__ as PIPELINE_VERSION
from pipeline.case_masks import CaseMask
from pipeline.io import sha256_of
from pipeline.records import CaseRecord, ChannelSource


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


def image_row(case: CaseRecord, channel: ChannelSource, header, hashes, config) -> dict:
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
        "midline_x_mm": None,
        "midline_source": None,
        "midline_score": None,
        "split": None,  # assigned over the whole catalog when the tables are written (catalog.splits)
        "duplicate_group": None,
        "pipeline_version": PIPELINE_VERSION,
        "config_hash": config.config_hash(),
    }


def shard_path(dataset: str, image_id: str, stored_sha256: str, label_sha256: str) -> str:
    """The image's shard, relative to the catalog root: `shards/<dataset>/<image_id>-<content key>.zarr`.

    The key (12 hex digits) hashes what the shard holds: the stored image and the stored label map (their
    `fingerprint.stored_image_sha256`). Another content gets another name, so a shard that a published table
    names is never overwritten with other data (object storage has no rename to swap it atomically); the
    same content keeps its name (a config change that alters neither array moves no shard), in every
    catalog, local or on S3.
    """
    content = f"{stored_sha256}/{label_sha256}"
    return f"shards/{dataset}/{image_id}-{hashlib.sha256(content.encode()).hexdigest()[:12]}.zarr"


def source_hash(image_sha: str | None, label_sha: str | None) -> str:
    return f"{image_sha or 'missing'}:{label_sha or 'missing'}"


def mask_row(case, channel, image_id, index, mask: CaseMask, image_reason, config) -> dict:
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
        **_evidence_columns(mask),
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


def _evidence_columns(mask: CaseMask) -> dict:
    """The bilateral evidence of a mask (pipeline.laterality.evidence), None where it was not looked at."""
    evidence = mask.evidence
    if evidence is None:
        return {"side_balance": None, "side_symmetry": None, "side_midline_fraction": None, "side_dip": None}
    return {
        "side_balance": evidence.balance,
        "side_symmetry": evidence.symmetry,
        "side_midline_fraction": evidence.midline_fraction,
        "side_dip": evidence.dip if math.isfinite(evidence.dip) else None,
    }
