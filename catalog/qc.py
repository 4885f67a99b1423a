"""Quality-control pictures of a mask: axial, coronal and sagittal views through its centroid.

Views follow the radiological display convention, whatever the stored array order:
- axial (seen from the feet): patient's RIGHT on the image's left, anterior at the top;
- coronal (seen from the front): patient's right on the image's left, superior at the top;
- sagittal (seen from the patient's left): anterior on the image's left, superior at the top.
The stored image and label are first turned to the LPS frame with the stored direction cosines
(`SimpleITK.DICOMOrient`: index axes x, y, z then increase toward patient Left, Posterior, Superior;
permutations and flips only, closest axes for oblique grids), then each view is a plain slice of that
array, rows flipped where superior must be at the top. Nothing assumes an array order.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from catalog.reader import Catalog  # noqa: E402
from catalog.store.location import CatalogLocation  # noqa: E402

QC_DIR = Path("report") / "qc"
# Soft-tissue window for CT (HU); other modalities use the 1st-99.5th percentile of the body.
_CT_WINDOW = (-160.0, 240.0)


@dataclass
class View:
    """One displayed plane. `image`, `mask`: (rows, columns) arrays as shown (row 0 at the top).

    `edges` names the patient direction at each edge of the picture ("left", "right", "top", "bottom" ->
    "R", "L", "A", "P", "S", "I"); `pixel_mm` is the (row, column) pixel size in mm.
    """

    name: str
    image: np.ndarray
    mask: np.ndarray
    pixel_mm: tuple[float, float]
    edges: dict[str, str]


def to_lps(array: np.ndarray, spacing_xyz, origin_xyz, direction) -> sitk.Image:
    """A stored (z, y, x) array with its geometry, turned so its index axes point to L, P, S."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing([float(v) for v in spacing_xyz])
    image.SetOrigin([float(v) for v in origin_xyz])
    image.SetDirection([float(v) for v in direction])
    return sitk.DICOMOrient(image, "LPS")


def radiological_views(image: sitk.Image, mask: sitk.Image) -> list[View]:
    """Axial, coronal and sagittal views of LPS-oriented `image` and `mask` (see `to_lps`) through the
    mask's centroid (the nearest plane holding mask voxels when the centroid plane holds none)."""
    volume = sitk.GetArrayFromImage(image)  # (z, y, x) = (S, P, L) increasing
    inside = sitk.GetArrayFromImage(mask) != 0
    if not inside.any():
        raise ValueError("the mask is empty in the stored label map")
    sx, sy, sz = image.GetSpacing()
    z, y, x = (_plane_through(inside, axis) for axis in range(3))
    return [
        View("axial", volume[z], inside[z], (sy, sx), {"left": "R", "right": "L", "top": "A", "bottom": "P"}),
        View("coronal", volume[::-1, y, :], inside[::-1, y, :], (sz, sx),
             {"left": "R", "right": "L", "top": "S", "bottom": "I"}),
        View("sagittal", volume[::-1, :, x], inside[::-1, :, x], (sz, sy),
             {"left": "A", "right": "P", "top": "S", "bottom": "I"}),
    ]


def _plane_through(inside: np.ndarray, axis: int) -> int:
    """Index along `axis` of the plane through the mask centroid, moved to the nearest plane with mask."""
    other = tuple(a for a in range(3) if a != axis)
    counts = inside.sum(axis=other)
    centre = float(np.dot(np.arange(len(counts)), counts) / counts.sum())
    present = np.flatnonzero(counts)
    return int(present[np.argmin(np.abs(present - centre))])


def render_views(views: list[View], title: str, out_png: Path, modality: str) -> Path:
    """Draw the views side by side (mask outlined in yellow, direction letters at the edges) into a PNG."""
    low, high = _window(np.concatenate([v.image.ravel() for v in views]), modality)
    figure, axes = plt.subplots(1, len(views), figsize=(4.2 * len(views), 4.8), facecolor="black")
    for axis, view in zip(np.atleast_1d(axes), views):
        rows, columns = view.image.shape
        extent = (0, columns * view.pixel_mm[1], rows * view.pixel_mm[0], 0)
        axis.imshow(view.image, cmap="gray", vmin=low, vmax=high, extent=extent, interpolation="nearest")
        if view.mask.any():
            # Pixel centres in the image's data coordinates (mm from the top-left corner, y growing down).
            centres_x = (np.arange(columns) + 0.5) * view.pixel_mm[1]
            centres_y = (np.arange(rows) + 0.5) * view.pixel_mm[0]
            axis.contour(centres_x, centres_y, view.mask.astype(float), levels=[0.5], colors="yellow", linewidths=1.0)
        for letter, x, y, ha, va in edge_marks(view):
            axis.text(x, y, letter, transform=axis.transAxes, color="orange", fontsize=14, fontweight="bold",
                      ha=ha, va=va)
        axis.set_title(view.name, color="white")
        axis.set_axis_off()
    figure.suptitle(title, color="white", fontsize=10)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_png, dpi=90, facecolor="black")
    plt.close(figure)
    return out_png


# Where each edge letter goes, in axes fractions (x, y from the bottom left), with its alignment.
_EDGE_TEXT = {
    "left": (0.02, 0.5, "left", "center"),
    "right": (0.98, 0.5, "right", "center"),
    "top": (0.5, 0.98, "center", "top"),
    "bottom": (0.5, 0.02, "center", "bottom"),
}


def edge_marks(view: View) -> list[tuple[str, float, float, str, str]]:
    """(letter, x, y, horizontal alignment, vertical alignment) of the direction letters drawn on a view;
    x, y are fractions of the picture from its bottom-left corner."""
    return [(view.edges[edge], x, y, ha, va) for edge, (x, y, ha, va) in _EDGE_TEXT.items()]


def _window(values: np.ndarray, modality: str) -> tuple[float, float]:
    if modality == "CT":
        return _CT_WINDOW
    body = values[values > values.min()]
    if body.size == 0:
        return float(values.min()), float(values.min()) + 1.0
    low, high = np.percentile(body, [1.0, 99.5])
    return float(low), float(max(high, low + 1e-6))


def mask_views(root: str | Path, mask_id: str) -> tuple[list[View], dict, dict]:
    """The views of catalog mask `mask_id`, with its mask row and image row (dicts)."""
    catalog = Catalog(root)
    masks = catalog.masks()
    found = masks[masks.mask_id == mask_id]
    if found.empty:
        raise KeyError(f"mask {mask_id!r} is not in the catalog at {root}")
    mask_row = found.iloc[0].to_dict()
    if mask_row["status"] != "kept":
        raise KeyError(f"mask {mask_id!r} was rejected ({mask_row['reason']}); only kept masks are stored")
    images = catalog.images()
    image_row = images[images.image_id == mask_row["image_id"]].iloc[0].to_dict()
    group = catalog.shard(mask_row["image_id"])
    geometry = (image_row["stored_spacing_xyz"], image_row["stored_origin_xyz"], image_row["stored_direction"])
    image = to_lps(group["image"][:], *geometry)
    label = to_lps((group["label"][:] == mask_row["label_value"]).astype(np.uint8), *geometry)
    return radiological_views(image, label), mask_row, image_row


def show_mask(root: str | Path, mask_id: str, out_png: str | Path | None = None) -> Path | str:
    """Write the QC picture of a kept mask; default `report/qc/<mask_id>.png` in the catalog (local or S3).

    Returns the picture's path (or URL in an S3 catalog)."""
    if out_png is not None:
        return _render_mask(root, mask_id, Path(out_png))
    location = CatalogLocation.parse(root)
    with location.local_output(QC_DIR.as_posix()) as folder:
        written = _render_mask(root, mask_id, folder / f"{mask_id}.png")
    return location.output_reference(QC_DIR.as_posix(), written)


def _render_mask(root: str | Path, mask_id: str, out_png: Path) -> Path:
    views, mask_row, image_row = mask_views(root, mask_id)
    title = (f"{mask_row['category']}  ({mask_row['volume_ml']:.1f} ml)   {image_row['dataset']} / "
             f"{image_row['case_id']} / {image_row['channel_name']}   mask {mask_id}")
    return render_views(views, title, out_png, image_row["modality"])


def qc_images_for_report(root: str | Path, n: int = 6, out_dir: str | Path | None = None) -> list[Path | str]:
    """QC pictures of up to `n` kept masks, spread over datasets (the largest kept mask of each dataset's
    first kept image, then the next largest...), written to `out_dir` (default `report/qc/` in the catalog,
    local or S3). Returns their paths (URLs in an S3 catalog)."""
    masks = Catalog(root).masks()
    kept = masks[masks.status == "kept"].sort_values(["dataset", "image_id", "volume_ml", "mask_id"],
                                                     ascending=[True, True, False, True])
    first_images = kept.groupby("dataset").image_id.transform("first")
    kept = kept[kept.image_id == first_images]
    kept = kept.assign(rank=kept.groupby("dataset").cumcount()).sort_values(["rank", "dataset"])
    chosen = list(kept.mask_id.head(n))
    if out_dir is not None:
        return [_render_mask(root, mask_id, Path(out_dir) / f"{mask_id}.png") for mask_id in chosen]
    location = CatalogLocation.parse(root)
    with location.local_output(QC_DIR.as_posix()) as folder:
        written = [_render_mask(root, mask_id, folder / f"{mask_id}.png") for mask_id in chosen]
    return [location.output_reference(QC_DIR.as_posix(), path) for path in written]


def add_arguments(catalog_commands: argparse._SubParsersAction) -> None:
    """`sammed3d catalog show DIR --mask ID [-o PNG]`."""
    show = catalog_commands.add_parser("show", help="QC picture of one mask (axial, coronal, sagittal views)")
    show.add_argument("root", help="catalog folder or s3:// URL")
    show.add_argument("--mask", required=True, metavar="ID", help="mask_id from masks.parquet")
    show.add_argument("-o", "--out", metavar="PNG", help="output file (default report/qc/<ID>.png in the catalog)")


def run(args: argparse.Namespace) -> int:
    print(show_mask(args.root, args.mask, args.out))
    return 0
