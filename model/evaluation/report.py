"""Tables, plots and the Markdown report of an evaluation run (computed by :mod:`model.evaluation.evaluate`).

Layout under the output folder::

    report.md                       the report, linking everything below
    per_step.parquet, per_mask.parquet, sensitivity.parquet   (written by model.evaluation.evaluate)
    tables/by_<key>.parquet|.md     mean scores per category, group, modality, dataset, seen/unseen
    plots/dice_vs_clicks_<protocol>.png, plots/case_<n>.png
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display: safe on servers and in worker processes

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from model.evaluation.metrics import dice  # noqa: E402
from model.evaluation.protocol import (  # noqa: E402
    BASELINE,
    CHALLENGE,
    CROP,
    NETWORK,
    ORIGINAL,
    PAPER,
    EvaluationSettings,
    MaskCase,
)
from model.evaluation.sensitivity import SENSITIVITY_COLUMNS  # noqa: E402

GROUPINGS = ("category", "group", "modality", "dataset", "seen")
METHODS = (NETWORK, BASELINE)
SPACE_TITLES = {ORIGINAL: "original image geometry", CROP: "inside the 128³ crop"}
COLOURS = {NETWORK: "tab:red", BASELINE: "tab:blue"}


def headline_metrics(settings: EvaluationSettings) -> list[tuple[str, str]]:
    """(per_mask column, display name) of the scores shown in the tables."""
    paper = [(f"paper_dice_at_{c}", f"paper Dice@{c}") for c in settings.report_clicks()]
    challenge = [
        ("challenge_dsc_auc", "DSC AUC"),
        ("challenge_nsd_auc", "NSD AUC"),
        ("challenge_final_dsc", "final DSC"),
        ("challenge_final_nsd", "final NSD"),
    ]
    return paper + challenge


def grouped_table(summary: pd.DataFrame, key: str) -> pd.DataFrame:
    """Mean scores per value of `key` and space; columns "<score> [network]" next to "<score> [baseline]"."""
    scores = [c for c in summary.columns if c.startswith(("paper_", "challenge_"))]
    frame = summary.assign(seen=summary.seen.map({True: "seen", False: "unseen"}), all="all masks")
    means = frame.groupby([key, "space", "method"])[scores].mean().unstack("method")
    means.columns = [f"{score} [{method}]" for score, method in means.columns]
    ordered = [f"{score} [{method}]" for score in scores for method in METHODS if f"{score} [{method}]" in means]
    counts = frame[frame.method == NETWORK].groupby([key, "space"]).mask_id.nunique().rename("masks")
    return pd.concat([counts, means[ordered]], axis=1).reset_index()


def markdown_table(table: pd.DataFrame, key: str, space: str, settings: EvaluationSettings) -> str:
    """One space of a grouped table as Markdown, each cell "network / baseline"."""
    rows = table[table.space == space]
    shown = pd.DataFrame({key: rows[key].astype(str), "masks": rows["masks"]})
    for column, title in headline_metrics(settings):
        network, baseline = rows[f"{column} [{NETWORK}]"], rows[f"{column} [{BASELINE}]"]
        shown[title] = [f"{a:.3f} / {b:.3f}" for a, b in zip(network, baseline)]
    return shown.to_markdown(index=False)


def plot_dice_vs_clicks(steps: pd.DataFrame, protocol: str, path: Path) -> None:
    """Mean Dice per click for each structure group (and all masks), both methods, both spaces."""
    data = steps[steps.protocol == protocol]
    groups = ["all masks", *sorted(data.group.dropna().unique())]
    fig, axes = plt.subplots(1, len(groups), figsize=(3.6 * len(groups), 3.4), squeeze=False, sharey=True)
    for ax, group in zip(axes[0], groups):
        subset = data if group == "all masks" else data[data.group == group]
        for method in METHODS:
            for space, style in ((ORIGINAL, "-"), (CROP, ":")):
                curve = subset[subset.method == method].groupby("click")[f"dice_{space}"].mean()
                ax.plot(curve.index, curve.values, style, marker="o", ms=3, color=COLOURS[method],
                        label=f"{method} ({space})")
        ax.set_title(f"{group} (n={subset.mask_id.nunique()})", fontsize=9)
        ax.set_xlabel("clicks")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("mean Dice")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(f"Dice vs clicks, {protocol} protocol", fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _oriented(case: MaskCase, array: np.ndarray) -> np.ndarray:
    """A patch array reoriented so its axes run along L, P, S (closest axes for oblique patches)."""
    return sitk.GetArrayFromImage(sitk.DICOMOrient(case.grid.to_image(array.astype(np.float32)), "LPS"))


def plot_case(case: MaskCase, path: Path) -> None:
    """Axial, coronal and sagittal slices through the target: image, target (green), final paper-protocol
    predictions of the network (red) and the baseline (blue)."""
    image = _oriented(case, case.patch)
    target = _oriented(case, case.target) > 0.5
    predictions = {m: _oriented(case, case.final[(PAPER, m)]) >= 0.5 for m in METHODS if (PAPER, m) in case.final}
    cz, cy, cx = np.rint(np.argwhere(target).mean(axis=0)).astype(int)
    views = {
        "axial": lambda a: a[cz],
        "coronal": lambda a: a[:, cy, :],
        "sagittal": lambda a: a[:, :, cx],
    }
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.8))
    for ax, (name, cut) in zip(axes, views.items()):
        origin = "upper" if name == "axial" else "lower"  # superior up in coronal and sagittal views
        ax.imshow(cut(image), cmap="gray", origin=origin)
        ax.contour(cut(target).astype(float), levels=[0.5], colors="lime", linewidths=1.0, origin=origin)
        for method, mask in predictions.items():
            if cut(mask).any():
                ax.contour(cut(mask).astype(float), levels=[0.5], colors=COLOURS[method], linewidths=1.0, origin=origin)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    scores = ", ".join(f"{m} Dice {dice(case.final[(PAPER, m)] >= 0.5, case.target):.2f}" for m in predictions)
    row = case.row
    fig.suptitle(f"{row.category} ({row.dataset}, {row.modality}); green: target, red: network, blue: baseline; "
                 f"{scores}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def sensitivity_table(sensitivity: pd.DataFrame) -> pd.DataFrame:
    """Mean prompt-sensitivity scores per method, with the number of masks measured."""
    table = sensitivity.groupby("method")[list(SENSITIVITY_COLUMNS)].mean()
    table.insert(0, "masks", sensitivity.groupby("method").size())
    return table.reindex([m for m in METHODS if m in table.index])


def sensitivity_section(sensitivity: pd.DataFrame, settings: EvaluationSettings) -> list[str]:
    """Report lines: does each method follow its click (see model.evaluation.sensitivity)?"""
    lines = ["## Prompt sensitivity: does the prediction follow the click?", ""]
    if not settings.prompt_sensitivity:
        return lines + ["Not measured (switched off).", ""]
    if sensitivity.empty:
        return lines + ["No evaluated crop holds another labelled target besides the clicked one.", ""]
    table = sensitivity_table(sensitivity)
    lines += [
        "Crops holding other labelled targets besides the clicked one; one click at the centre of the target, "
        "then the same click moved to the centre of the largest other target. **on_target** / **on_others**: "
        "fraction of the predicted voxels inside the clicked target / inside the other targets; "
        "**moved_follow**: Dice of the moved click's prediction against the other target; **moved_change**: "
        "1 - Dice between the two predictions (0: the click did not matter).",
        "",
        table.to_markdown(floatfmt=".3f"),
        "",
    ]
    network = table.loc[NETWORK] if NETWORK in table.index else None
    if network is not None:
        follows = network.moved_follow >= 0.5 and network.on_target > network.on_others
        verdict = "follows its clicks" if follows else "does NOT follow its clicks"
        lines += [
            f"The network {verdict}: moved_follow {network.moved_follow:.2f}, on_target {network.on_target:.2f} "
            f"vs on_others {network.on_others:.2f} over {int(network.masks)} crops.",
            "",
        ]
    return lines


CROP_PLACEMENT_TEXT = {
    "centred": "- The patch is 128³ at 1.5 mm centred on the target's bounding box, as the paper cropped: the methods "
    "are told where the target is, no more.",
    "random": "- The patch is 128³ at 1.5 mm holding the target's bounding box at a seeded random place (as training "
    "places it): only the click tells the methods where the target is.",
}

PAPER_FEEDING_TEXT = {
    "new": "only the new click (as the paper fed it; the baseline gets every click so far)",
    "all": "every click so far (as the baseline does; the paper fed only the new click)",
}

# Mean Dice must gain at least this much from the first to the last click to count as rising.
RISE_MIN = 0.01


def clicks_verdict(summary: pd.DataFrame, settings: EvaluationSettings) -> list[str]:
    """One line per method: does its mean Dice rise from the first to the last click (paper protocol, original
    geometry where scored, else inside the crop)?"""
    last = settings.report_clicks()[-1]
    lines = []
    for method in METHODS:
        rows = summary[summary.method == method]
        space = ORIGINAL if rows[rows.space == ORIGINAL].paper_dice_at_1.notna().any() else CROP
        rows = rows[rows.space == space]
        first, final = rows.paper_dice_at_1.mean(), rows[f"paper_dice_at_{last}"].mean()
        rises = final - first >= RISE_MIN
        lines.append(
            f"- The {method}'s Dice {'rises' if rises else 'does NOT rise'} with clicks: {first:.3f} after 1 click, "
            f"{final:.3f} after {last} (paper protocol, {SPACE_TITLES[space]})."
        )
    return [*lines, ""]


def write_report(
    out: Path,
    *,
    steps: pd.DataFrame,
    summary: pd.DataFrame,
    sensitivity: pd.DataFrame,
    overlays: list[MaskCase],
    skipped: list[dict],
    settings: EvaluationSettings,
    context: dict,
) -> Path:
    """Write tables, plots and report.md under `out`; return the report's path."""
    tables_dir, plots_dir = out / "tables", out / "plots"
    tables_dir.mkdir(exist_ok=True)
    plots_dir.mkdir(exist_ok=True)
    table_links = []
    for key in GROUPINGS:
        table = grouped_table(summary, key)
        table.to_parquet(tables_dir / f"by_{key}.parquet", index=False)
        sections = [f"# Mean scores by {key} (network / baseline)\n"]
        for space in (ORIGINAL, CROP):
            sections.append(f"## {SPACE_TITLES[space]}\n\n{markdown_table(table, key, space, settings)}\n")
        (tables_dir / f"by_{key}.md").write_text("\n".join(sections), encoding="utf-8")
        table_links.append(f"- by {key}: [Markdown](tables/by_{key}.md), [Parquet](tables/by_{key}.parquet)")
    for protocol in (PAPER, CHALLENGE):
        plot_dice_vs_clicks(steps, protocol, plots_dir / f"dice_vs_clicks_{protocol}.png")
    for stale in plots_dir.glob("case_*.png"):  # from an earlier run into the same folder
        stale.unlink()
    case_figures = []
    for number, case in enumerate(overlays, start=1):
        plot_case(case, plots_dir / f"case_{number}.png")
        case_figures.append(f"![{case.row.mask_id}](plots/case_{number}.png)")

    overall = grouped_table(summary, "all")
    masks_done = summary.mask_id.nunique()
    missing_original = int(steps.dice_original.isna().groupby(steps.mask_id).all().sum())
    lines = [
        "# Evaluation report",
        "",
        f"- catalog: `{context['catalog']}`",
        f"- checkpoint: `{context['checkpoint']}`",
        f"- splits: {context['splits']}; masks evaluated: {masks_done}; skipped: {len(skipped)}; "
        f"seed {context['seed']}",
        f"- device: {context['device']}; time: {context['seconds']:.1f} s",
        "",
        "Each cell is **network / baseline** (region growing from the clicks, same clicks rule, same run).",
        "",
        "## Protocols",
        "",
        f"- **Paper** (SAM-Med3D): first click random inside the target, then random in the error region; the "
        f"network gets {PAPER_FEEDING_TEXT[settings.paper_clicks_fed]} and its previous low-res logits. "
        f"{settings.paper_clicks} clicks; Dice@k after k clicks.",
        f"- **CVPR 2025 challenge**: each click at the centre of the largest error component; the network gets "
        f"all clicks so far and its previous logits. {settings.challenge_clicks} clicks; DSC AUC and NSD AUC "
        f"({settings.nsd_tolerance_mm:g} mm) are the trapezoidal areas under the score-vs-click curve divided by "
        f"(clicks - 1), so 1 is perfect from the first click; final DSC/NSD after the last click.",
        CROP_PLACEMENT_TEXT[settings.crop_placement],
        "- **original image geometry**: predictions pasted back into the original image grid and compared with "
        "the original label file (label == source label); for masks the curation split into left/right, the "
        "stored catalog mask pasted back into the original grid is the reference. Target parts outside the "
        "crop count as misses. **inside the crop**: scored on the stored 1.5 mm patch, as the paper did.",
        "- seen/unseen: whether the category has kept masks in this catalog's train split.",
        "",
    ]
    if missing_original:
        lines += [
            f"Original label file missing for {missing_original} mask(s): their original-geometry scores are empty.",
            "",
        ]
    for space in (ORIGINAL, CROP):
        lines += [f"## All masks, {SPACE_TITLES[space]}", "", markdown_table(overall, "all", space, settings), ""]
    lines += sensitivity_section(sensitivity, settings)
    lines += [
        "## Dice vs clicks",
        "",
        *clicks_verdict(summary, settings),
        "Solid: original geometry; dotted: inside the crop.",
        "",
        "![paper protocol](plots/dice_vs_clicks_paper.png)",
        "",
        "![challenge protocol](plots/dice_vs_clicks_challenge.png)",
        "",
        "## Tables",
        "",
        *table_links,
        "",
        "Per mask: [per_mask.parquet](per_mask.parquet) (one row per mask, method and space); per click: "
        "[per_step.parquet](per_step.parquet).",
        "",
    ]
    if case_figures:
        lines += ["## Example cases (paper protocol, last click)", "", *case_figures, ""]
    if skipped:
        lines += ["## Skipped masks", "", pd.DataFrame(skipped).to_markdown(index=False), ""]
    report = out / "report.md"
    report.write_text("\n".join(lines), encoding="utf-8")
    return report
