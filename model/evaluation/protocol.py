"""Evaluation on catalog masks: two click protocols, the network beside a region-growing baseline.

For each selected mask (default: kept masks of the "test" split):

* The patch: 128^3 stored voxels (1.5 mm, the image's own direction) centred on the mask's bounding
  box, zero-padded outside the image, normalised by modality (``model.intensity.normalize_intensity``).
  Centring on the target is what the paper's evaluation did; it tells the method where the target
  is (a location prior), and no more than that: the methods see only the patch and the clicks.
* Paper protocol (SAM-Med3D): the first click is a random target voxel, each later click a random
  voxel of the current error region (``model.clicks.paper_click``); at each step the network gets
  ONLY the new click plus its previous low-resolution logits as the mask prompt. 10 clicks; the
  report gives Dice (and NSD) after 1, 3, 5 and 10 clicks.
* CVPR 2025 challenge protocol: each click at the centre of the largest error component
  (``model.clicks.challenge_click``); the network gets all clicks so far plus its previous logits
  (how it is trained, see ``model.training.click_loop``). 5 clicks; DSC AUC and NSD AUC (2 mm) over the
  click steps (``model.evaluation.metrics.click_curve_auc``), final DSC and NSD.
* The baseline (``model.evaluation.baseline.RegionGrowingBaseline``) gets every click so far at every step, in
  both protocols, and runs on the same patch with the same click rules in the same run.
* Dice at every click, NSD after the paper's reporting clicks and every challenge click (the
  AUC needs them), in two spaces: "crop" (the patch, stored 1.5 mm grid, as the paper
  scored) and "original" (the prediction pasted back into the ORIGINAL image grid with
  ``model.evaluation.crop.paste_back_region``, linear interpolation thresholded at 0.5, compared with the original label file: voxels equal to the
  mask's ``source_label``). For masks the curation split into sides (``side_source`` in
  ``SPLIT_SIDE_SOURCES``) the original label holds both sides under one value, so their original-grid reference is the
  stored catalog mask (``label == label_value``) pasted back into the original grid (nearest
  neighbour) instead. Parts of a target outside the patch count as misses in "original".

Outputs under ``out_dir``: ``per_step.parquet`` (one row per mask, protocol, method, click),
``per_mask.parquet`` (one row per mask, method and space, headline scores as columns), tables per
category, structure group, modality, dataset and seen/unseen (Parquet + Markdown), PNG plots, and
``report.md`` linking them (written by :mod:`model.evaluation.report`, run by
:func:`model.evaluation.evaluate.evaluate`).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
import torch

from catalog.reader import Catalog
from catalog.schema import SPLIT_SIDE_SOURCES
from model.clicks import challenge_click, paper_click
from model.evaluation.crop import PATCH_SIZE, PatchGrid, paste_back_region
from model.evaluation.metrics import NSD_TOLERANCE_MM, click_curve_auc, dice, normalized_surface_dice
from model.evaluation.sensitivity import SENSITIVITY_COLUMNS, prompt_sensitivity
from model.input_convention import first_mask_prompt, ras_view, zscore_foreground
from model.intensity import normalize_intensity
from model.network.attention import check_convention
from model.predictor import Predictor
from model.targets import patch_start
from pipeline.geometry import Geometry

PAPER, CHALLENGE = "paper", "challenge"
NETWORK, BASELINE = "network", "baseline"
CLICKS_FED = ("new", "all")
CROP, ORIGINAL = "crop", "original"
CROP_PLACEMENTS = ("centred", "random")


@dataclass(frozen=True)
class EvaluationSettings:
    """Click budgets and tolerances; defaults follow the paper and the CVPR 2025 challenge."""

    paper_clicks: int = 10
    paper_report_clicks: tuple[int, ...] = (1, 3, 5, 10)
    challenge_clicks: int = 5
    nsd_tolerance_mm: float = NSD_TOLERANCE_MM
    overlay_cases: int = 3
    # "centred" crops the patch around the target's bounding box as the paper did (a location prior: the
    # target is always in the middle); "random" places the box at a seeded random position in the patch,
    # as training does, so that only the click says which structure is meant.
    crop_placement: str = "centred"
    prompt_sensitivity: bool = True
    # Which clicks the network gets in the paper protocol: "new" only the latest one, as the paper fed them
    # (earlier clicks live on only in its mask prompt); "all" every click so far, the information the baseline
    # always gets and the way `sammed3d segment` feeds the network.
    paper_clicks_fed: str = "new"
    # "published": crops turned to the published (R, A, S) axis order and z-scored over voxels > 0 without
    # CT clipping (model.input_convention), for networks loaded from published weights; every method sees them.
    input_convention: str = "native"

    def __post_init__(self) -> None:
        check_convention(self.input_convention)
        if self.crop_placement not in CROP_PLACEMENTS:
            raise ValueError(f"crop_placement must be one of {CROP_PLACEMENTS}, got {self.crop_placement!r}")
        if self.paper_clicks_fed not in CLICKS_FED:
            raise ValueError(f"paper_clicks_fed must be one of {CLICKS_FED}, got {self.paper_clicks_fed!r}")

    def report_clicks(self) -> tuple[int, ...]:
        """The paper's reporting points within the click budget (always including the last click)."""
        clicks = {c for c in self.paper_report_clicks if c <= self.paper_clicks} | {self.paper_clicks}
        return tuple(sorted(clicks))


class NetworkMethod:
    """The network as a click-driven method: embeds the patch once, decodes once per click.

    Args:
        predictor (Predictor): the loaded network.
        clicks_fed (str): "new" feeds only the latest click, "all" every click so far; the previous
            step's low-resolution logits are always the mask prompt (for the first click: none, or the
            all-zero prompt for a network of the published convention, as the published code runs it).
    """

    def __init__(self, predictor: Predictor, clicks_fed: str) -> None:
        if clicks_fed not in CLICKS_FED:
            raise ValueError(f"clicks_fed must be 'new' or 'all', got {clicks_fed!r}")
        self.predictor = predictor
        self.clicks_fed = clicks_fed
        self._lowres: torch.Tensor | None = None

    def start(self, patch: np.ndarray) -> None:
        """patch: (128, 128, 128) float32 normalised intensities, (z, y, x)."""
        self.predictor.set_image(torch.from_numpy(np.ascontiguousarray(patch, dtype=np.float32)))
        self._lowres = first_mask_prompt(self.predictor.model, device=self.predictor.device)

    def step(self, points: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """points (N, 3) (z, y, x) patch voxel indices, labels (N,) -> (128, 128, 128) float32 probabilities."""
        if self.clicks_fed == "new":
            points, labels = points[-1:], labels[-1:]
        logits, _, self._lowres = self.predictor.predict(points, labels, mask_input=self._lowres)
        return torch.sigmoid(logits[0, 0].float()).cpu().numpy()


ClickRule = Callable[[np.ndarray | None, np.ndarray], tuple[np.ndarray, int]]


@dataclass
class MaskCase:
    """Everything needed to score one mask: its patch, target, and original-grid reference.

    patch, target: (128, 128, 128) (z, y, x) normalised intensities and bool target, stored grid.
    original_geometry/region/reference: the original grid, the (z, y, x) box of it that is scored
    (the patch footprint joined with the reference's bounding box), and the reference mask inside
    that box; None when the original label file cannot be read.
    """

    row: pd.Series
    patch: np.ndarray
    target: np.ndarray
    grid: PatchGrid
    labels: np.ndarray | None = None  # (128, 128, 128) stored label values of the crop (all masks)
    original_geometry: Geometry | None = None
    region: tuple[slice, slice, slice] | None = None
    reference: np.ndarray | None = None
    final: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)

    def scores(self, probability: np.ndarray, tolerance_mm: float, with_nsd: bool) -> dict[str, float]:
        """Dice (and NSD when `with_nsd`, else NaN) of (128, 128, 128) probabilities, in both spaces."""
        prediction = probability >= 0.5
        scores = {"dice_crop": dice(prediction, self.target), "nsd_crop": np.nan}
        scores.update(dice_original=np.nan, nsd_original=np.nan)
        if with_nsd:
            spacing = self.grid.geometry.spacing_xyz[::-1]
            scores["nsd_crop"] = normalized_surface_dice(prediction, self.target, spacing, tolerance_mm)
        if self.reference is not None:
            pasted = paste_back_region(probability, self.grid, self.original_geometry, self.region)
            scores["dice_original"] = dice(pasted, self.reference)
            if with_nsd:
                spacing = self.original_geometry.spacing_xyz[::-1]
                scores["nsd_original"] = normalized_surface_dice(pasted, self.reference, spacing, tolerance_mm)
        return scores


class OriginalLabels:
    """Original label maps, read once per file for the consecutive masks that share them."""

    def __init__(self) -> None:
        self._path: str | None = None
        self._image: sitk.Image | None = None

    def get(self, path: str) -> sitk.Image:
        if path != self._path:
            self._image = sitk.ReadImage(path)
            self._path = path
        return self._image


def original_reference(
    catalog: Catalog, mask: pd.Series, label_path: str | None, labels: OriginalLabels
) -> tuple[sitk.Image, np.ndarray] | None:
    """The mask in the original image grid: (label image, (z, y, x) bool array), or None without the file."""
    if not label_path or not Path(label_path).is_file():
        return None
    label = labels.get(label_path)
    if mask.side_source in SPLIT_SIDE_SOURCES:
        shard = catalog.shard(mask.image_id)
        stored = sitk.GetImageFromArray((shard["label"][:] == mask.label_value).astype(np.uint8))
        stored.SetSpacing(tuple(shard.attrs["spacing_xyz"]))
        stored.SetOrigin(tuple(shard.attrs["origin_xyz"]))
        stored.SetDirection(tuple(shard.attrs["direction"]))
        pasted = sitk.Resample(stored, label, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        return label, sitk.GetArrayViewFromImage(pasted).astype(bool)
    return label, sitk.GetArrayViewFromImage(label) == mask.source_label


def prepare_case(
    catalog: Catalog,
    mask: pd.Series,
    label_path: str | None,
    labels: OriginalLabels,
    rng: np.random.Generator | None = None,
    convention: str = "native",
) -> MaskCase:
    """Read the patch around the mask's bounding box and its references (see the module docstring).
    `rng`: None centres the box in the patch; a generator places it at random (``patch_start``'s jitter).
    `convention` "published": the patch, target and label map in (R, A, S) axis order
    (``model.input_convention.ras_view``), z-scored over voxels > 0 without clipping."""
    start = patch_start(np.asarray(mask.bbox_zyx), PATCH_SIZE, rng)
    window = catalog.read_patch(mask.image_id, tuple(start + PATCH_SIZE // 2), (PATCH_SIZE,) * 3)
    shard = catalog.shard(mask.image_id)
    stored = Geometry(
        tuple(shard.attrs["spacing_xyz"]), tuple(shard.attrs["origin_xyz"]), tuple(shard.attrs["direction"])
    )
    grid = PatchGrid.from_window(stored, window["start"], PATCH_SIZE)
    if check_convention(convention) == "published":
        (image, label), grid = ras_view([window["image"], window["label"]], grid)
        patch, label = zscore_foreground(np.ascontiguousarray(image)), np.ascontiguousarray(label)
    else:
        patch, label = normalize_intensity(window["image"], mask.modality), window["label"]
    case = MaskCase(row=mask, patch=patch, target=label == mask.label_value, grid=grid, labels=label)
    found = original_reference(catalog, mask, label_path, labels)
    if found is None:
        return case
    label_image, reference = found
    geometry = Geometry.of(label_image)
    boxes = [] if not reference.any() else [np.argwhere(reference)]
    footprint = case.grid.footprint(geometry, reference.shape)
    if footprint is not None:
        boxes.append(np.array([[s.start for s in footprint], [s.stop - 1 for s in footprint]]))
    if boxes:
        corners = np.concatenate(boxes)
        region = tuple(slice(int(a), int(b) + 1) for a, b in zip(corners.min(axis=0), corners.max(axis=0)))
        case.original_geometry, case.region, case.reference = geometry, region, reference[region]
    return case


def run_protocol(
    case: MaskCase, method, click_rule: ClickRule, clicks: int, nsd_clicks: set[int], tolerance_mm: float
) -> tuple[list[dict], np.ndarray]:
    """Simulate `clicks` clicks on one mask; NSD is computed after the clicks in `nsd_clicks` only
    (it costs far more than Dice).

    Returns:
        one record (click number, click label, scores) per step, and the last step's (128, 128, 128)
        float32 probabilities.
    """
    method.start(case.patch)
    prediction, points, labels, records = None, [], [], []
    for click in range(1, clicks + 1):
        point, label = click_rule(prediction, case.target)
        points.append(point)
        labels.append(label)
        probability = method.step(np.asarray(points, dtype=np.float32), np.asarray(labels, dtype=np.int64))
        prediction = probability >= 0.5
        scores = case.scores(probability, tolerance_mm, with_nsd=click in nsd_clicks)
        records.append({"click": click, "click_label": int(label), **scores})
    return records, probability


@dataclass
class ProtocolResults:
    """What :func:`evaluate_masks` measured.

    steps: one row per mask, protocol, method and click (scores in both spaces).
    sensitivity: one row per mask and method whose crop holds other targets (SENSITIVITY_COLUMNS).
    overlays: the first ``settings.overlay_cases`` cases with their final paper-protocol predictions.
    skipped: masks not evaluated, with a reason.
    """

    steps: pd.DataFrame
    sensitivity: pd.DataFrame
    overlays: list[MaskCase]
    skipped: list[dict]


def mask_seed(seed: int, mask_id: str) -> list[int]:
    """A per-mask random stream, independent of which other masks are evaluated and in what order."""
    return [seed, zlib.crc32(mask_id.encode())]


def evaluate_masks(
    catalog: Catalog,
    masks: pd.DataFrame,
    methods: dict[str, dict[str, object]],
    settings: EvaluationSettings,
    seed: int,
) -> ProtocolResults:
    """Run both protocols with every method on every mask, and the prompt-sensitivity probe
    (:mod:`model.evaluation.sensitivity`) with the paper protocol's methods.

    Args:
        methods: {protocol: {method name: object with start(patch) and step(points, labels)}}.
    """
    labels, records, sensitivity, overlays, skipped = OriginalLabels(), [], [], [], []
    label_paths = catalog.images().set_index("image_id").label_path
    descriptive = ["mask_id", "image_id", "dataset", "modality", "category", "group", "side", "split"]
    for _, mask in masks.iterrows():
        placement = None
        if settings.crop_placement == "random":
            placement = np.random.default_rng([*mask_seed(seed, mask.mask_id), 1])
        case = prepare_case(
            catalog, mask, label_paths.get(mask.image_id), labels, placement, settings.input_convention
        )
        if not case.target.any():
            skipped.append({"mask_id": mask.mask_id, "reason": "no target voxel in the patch"})
            continue
        for name, method in methods.get(PAPER, {}).items() if settings.prompt_sensitivity else ():
            scores = prompt_sensitivity(method, case.patch, case.target, case.labels, int(mask.label_value))
            if scores is not None:
                sensitivity.append({**{c: mask[c] for c in descriptive}, "method": name, **scores})
        for protocol, by_method in methods.items():
            for name, method in by_method.items():
                if protocol == PAPER:
                    rng = np.random.default_rng(mask_seed(seed, mask.mask_id))
                    rule, clicks = (lambda p, t, rng=rng: paper_click(p, t, rng)), settings.paper_clicks
                    nsd_clicks = set(settings.report_clicks())
                else:
                    rule, clicks = challenge_click, settings.challenge_clicks
                    nsd_clicks = set(range(1, clicks + 1))
                steps, final = run_protocol(case, method, rule, clicks, nsd_clicks, settings.nsd_tolerance_mm)
                for step in steps:
                    records.append({**{c: mask[c] for c in descriptive}, "protocol": protocol, "method": name, **step})
                if protocol == PAPER and len(overlays) < settings.overlay_cases:
                    case.final[(protocol, name)] = final
        if case.final and len(overlays) < settings.overlay_cases:
            overlays.append(case)
    return ProtocolResults(
        pd.DataFrame.from_records(records),
        pd.DataFrame.from_records(sensitivity, columns=[*descriptive, "method", *SENSITIVITY_COLUMNS]),
        overlays,
        skipped,
    )


def per_mask_summary(steps: pd.DataFrame, settings: EvaluationSettings) -> pd.DataFrame:
    """One row per (mask, method, space) with the headline scores of both protocols as columns."""
    keys = ["mask_id", "image_id", "dataset", "modality", "category", "group", "side", "split", "seen", "method"]
    rows = []
    for key, group in steps.groupby(keys, dropna=False, sort=True):
        for space in (CROP, ORIGINAL):
            row = dict(zip(keys, key), space=space)
            paper = group[group.protocol == PAPER].set_index("click")
            for click in settings.report_clicks():
                row[f"paper_dice_at_{click}"] = paper[f"dice_{space}"].get(click, np.nan)
                row[f"paper_nsd_at_{click}"] = paper[f"nsd_{space}"].get(click, np.nan)
            challenge = group[group.protocol == CHALLENGE].sort_values("click")
            dsc, nsd = challenge[f"dice_{space}"].to_numpy(), challenge[f"nsd_{space}"].to_numpy()
            usable = len(dsc) > 0 and not np.isnan(dsc).any()
            row["challenge_dsc_auc"] = click_curve_auc(dsc) if usable else np.nan
            row["challenge_nsd_auc"] = click_curve_auc(nsd) if usable else np.nan
            row["challenge_final_dsc"] = dsc[-1] if usable else np.nan
            row["challenge_final_nsd"] = nsd[-1] if usable else np.nan
            rows.append(row)
    return pd.DataFrame(rows)
