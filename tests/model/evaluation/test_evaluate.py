"""Evaluation end to end on a SYNTHETIC phantom catalog with an untrained vit_tiny checkpoint."""

import argparse

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from catalog.reader import Catalog
from model.evaluation.evaluate import add_arguments, evaluate, run
from model.evaluation.inference import load_predictor
from model.evaluation.protocol import (
    BASELINE,
    CHALLENGE,
    NETWORK,
    PAPER,
    EvaluationSettings,
    NetworkMethod,
    OriginalLabels,
    prepare_case,
)
from tests.model.phantom_catalog import build_phantom_catalog, phantom_catalog  # noqa: F401  (session fixture)

SETTINGS = EvaluationSettings(paper_clicks=3, challenge_clicks=2, overlay_cases=1)


@pytest.fixture(scope="module")
def evaluation(phantom_catalog, untrained_checkpoint, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("evaluation")
    report = evaluate(
        phantom_catalog, untrained_checkpoint, out, splits=("all",), max_masks=2, seed=0, settings=SETTINGS
    )
    return out, report


def test_evaluate_writes_per_step_and_per_mask_rows_for_both_methods_and_protocols(evaluation):
    out, _ = evaluation
    steps = pd.read_parquet(out / "per_step.parquet")
    assert steps.mask_id.nunique() == 2
    counts = steps.groupby(["protocol", "method"]).size()
    assert counts[(PAPER, NETWORK)] == counts[(PAPER, BASELINE)] == 2 * SETTINGS.paper_clicks
    assert counts[(CHALLENGE, NETWORK)] == counts[(CHALLENGE, BASELINE)] == 2 * SETTINGS.challenge_clicks
    for column in ("dice_crop", "dice_original"):
        assert steps[column].between(0, 1).all()
    challenge = steps[steps.protocol == CHALLENGE]
    assert challenge[["nsd_crop", "nsd_original"]].notna().all().all(), "the AUC needs NSD at every challenge click"
    paper = steps[steps.protocol == PAPER]
    assert paper[paper.click == 2].nsd_crop.isna().all() and paper[paper.click == 3].nsd_crop.notna().all()

    summary = pd.read_parquet(out / "per_mask.parquet")
    assert len(summary) == 2 * 2 * 2  # masks x methods x spaces
    assert {"paper_dice_at_1", "paper_dice_at_3", "challenge_dsc_auc", "challenge_nsd_auc"} <= set(summary.columns)
    row = summary[(summary.method == BASELINE) & (summary.space == "crop")].iloc[0]
    curve = steps[(steps.mask_id == row.mask_id) & (steps.method == BASELINE) & (steps.protocol == CHALLENGE)]
    assert row.challenge_dsc_auc == pytest.approx(curve.sort_values("click").dice_crop.mean())  # 2 clicks: the mean


def test_evaluate_writes_tables_plots_and_a_report_linking_them(evaluation):
    out, report = evaluation
    text = report.read_text()
    for key in ("category", "group", "modality", "dataset", "seen"):
        assert f"tables/by_{key}.md" in text and f"tables/by_{key}.parquet" in text
        table = pd.read_parquet(out / "tables" / f"by_{key}.parquet")
        assert {"paper_dice_at_1 [network]", "paper_dice_at_1 [baseline]"} <= set(table.columns)
        assert "network / baseline" in (out / "tables" / f"by_{key}.md").read_text()
    for image in ("dice_vs_clicks_paper.png", "dice_vs_clicks_challenge.png", "case_1.png"):
        assert f"plots/{image}" in text
        assert matplotlib.image.imread(out / "plots" / image).shape[0] > 100
    assert "original image geometry" in text and "inside the 128³ crop" in text


def test_a_perfect_prediction_scores_one_in_the_crop_and_near_one_in_the_original_grid(phantom_catalog):  # noqa: F811
    catalog = Catalog(phantom_catalog)
    masks = catalog.masks().merge(catalog.images()[["image_id", "label_path", "orientation"]], on="image_id")
    kept = masks[(masks.status == "kept") & (masks.orientation == "RAS")]
    labels = OriginalLabels()
    for category in ("liver", "kidney right"):  # one source label, one left/right split by the curation
        mask = kept[kept.category == category].iloc[0]
        case = prepare_case(catalog, mask, mask.label_path, labels)
        scores = case.scores(case.target.astype(np.float32), 2.0, with_nsd=True)
        assert scores["dice_crop"] == 1.0 and scores["nsd_crop"] == pytest.approx(1.0)
        # Stored 1.5 mm vs original 2.5 x 2.5 x 3 mm grid: only resampling separates the two.
        assert scores["dice_original"] > 0.9 and scores["nsd_original"] > 0.9
        shifted = np.roll(case.target, 8, axis=2).astype(np.float32)
        assert case.scores(shifted, 2.0, with_nsd=False)["dice_original"] < scores["dice_original"] - 0.2


def test_the_paper_protocol_feeds_only_the_new_click_and_the_previous_logits(untrained_checkpoint):
    predictor = load_predictor(untrained_checkpoint, "cpu")
    calls = []
    original_predict = predictor.predict

    def recording_predict(points, labels, box=None, mask_input=None, multimask=False):
        calls.append((np.asarray(points).shape, mask_input is None))
        return original_predict(points, labels, box, mask_input, multimask)

    predictor.predict = recording_predict
    clicks = np.array([[60.0, 60.0, 60.0], [70.0, 64.0, 64.0], [50.0, 64.0, 64.0]])
    for mode, expected_points in (("new", [1, 1, 1]), ("all", [1, 2, 3])):
        calls.clear()
        method = NetworkMethod(predictor, mode)
        method.start(np.zeros((128, 128, 128), dtype=np.float32))
        for count in (1, 2, 3):
            probability = method.step(clicks[:count], np.array([1, 0, 1])[:count])
        assert probability.shape == (128, 128, 128) and 0 <= probability.min() <= probability.max() <= 1
        assert [shape[0] for shape, _ in calls] == expected_points
        assert [first for _, first in calls] == [True, False, False]


def test_cli_arguments_and_a_missing_checkpoint(phantom_catalog, tmp_path):  # noqa: F811
    parser = argparse.ArgumentParser(prog="sammed3d")
    add_arguments(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["evaluate", "--catalog", str(phantom_catalog), "--checkpoint", str(tmp_path / "none.pt"), "--split", "train"]
    )
    assert args.splits == ["train"] and args.max_masks is None and args.out == "evaluation"
    assert args.paper_clicks_fed == "new"
    with pytest.raises(FileNotFoundError, match="none.pt does not exist"):
        run(args)
    args.max_masks = 0
    with pytest.raises(ValueError, match="--max-masks"):
        run(args)


def test_evaluate_measures_and_reports_prompt_sensitivity(evaluation):
    out, report = evaluation
    sensitivity = pd.read_parquet(out / "sensitivity.parquet")
    # Phantom crops around a torso organ hold other organs: both methods are probed on the same masks.
    assert set(sensitivity.method) == {NETWORK, BASELINE}
    assert sensitivity.groupby("method").mask_id.apply(frozenset).nunique() == 1
    for column in ("on_target", "on_others", "moved_follow", "moved_change"):
        assert sensitivity[column].between(0, 1).all()
    assert ((sensitivity.on_target + sensitivity.on_others) <= 1 + 1e-9).all()
    text = report.read_text()
    assert "## Prompt sensitivity" in text and "moved_follow" in text
    assert "The network follows its clicks" in text or "The network does NOT follow its clicks" in text


def test_the_report_says_whether_dice_rises_with_clicks(evaluation):
    out, report = evaluation
    summary = pd.read_parquet(out / "per_mask.parquet")
    baseline = summary[(summary.method == BASELINE) & (summary.space == "original")]
    first, last = baseline.paper_dice_at_1.mean(), baseline[f"paper_dice_at_{SETTINGS.paper_clicks}"].mean()
    verdict = "rises" if last - first >= 0.01 else "does NOT rise"
    line = (f"The baseline's Dice {verdict} with clicks: {first:.3f} after 1 click, "
            f"{last:.3f} after {SETTINGS.paper_clicks}")
    assert line in report.read_text()
    assert "The network's Dice" in report.read_text()


def test_random_crop_placement_moves_the_target_off_centre(phantom_catalog):  # noqa: F811
    catalog = Catalog(phantom_catalog)
    masks = catalog.masks().merge(catalog.images()[["image_id", "label_path"]], on="image_id")
    mask = masks[(masks.status == "kept") & (masks.category == "kidney right")].iloc[0]
    centred = prepare_case(catalog, mask, mask.label_path, OriginalLabels())
    placed = [
        prepare_case(catalog, mask, mask.label_path, OriginalLabels(), np.random.default_rng(s)) for s in range(4)
    ]
    origins = {case.grid.geometry.origin_xyz for case in placed}
    assert len(origins) > 1 and centred.grid.geometry.origin_xyz not in origins
    for case in placed:  # wherever the patch lies, the whole target is in it
        assert case.target.sum() == centred.target.sum()
    with pytest.raises(ValueError, match="crop_placement"):
        EvaluationSettings(crop_placement="middle")


def test_cases_are_evaluated_whatever_their_split_and_seen_follows_the_training_config(
    phantom_catalog, untrained_checkpoint, tmp_path  # noqa: F811
):
    from model.evaluation.evaluate import select_evaluation_masks, training_config
    from model.network.checkpoint import save_checkpoint
    from model.network.registry import build_model
    from model.training.config import TrainConfig

    catalog = Catalog(phantom_catalog)
    images = catalog.images()
    held_out = [f"{r.dataset}/{r.case_id}" for r in images[images.modality == "CT"].head(1).itertuples()]
    assert training_config(untrained_checkpoint) is None  # weights only: no training configuration
    config = TrainConfig(catalog=str(phantom_catalog), out="o", splits=None, modalities=["MR"],
                         exclude_cases=held_out)
    trained = tmp_path / "trained.pt"
    save_checkpoint(trained, build_model("vit_tiny"), extra={"config": config.model_dump(mode="json")})
    assert training_config(trained)["exclude_cases"] == held_out
    masks = select_evaluation_masks(catalog, ("test",), None, 0, cases=held_out, training=training_config(trained))
    assert set(masks.dataset + "/" + masks.case_id) == set(held_out) and len(masks) > 3
    assert not masks.seen.any()  # trained on MR only: none of the CT categories was seen


def test_evaluate_on_an_s3_catalog_equals_the_local_one(s3_catalog_url, untrained_checkpoint, tmp_path):
    local = build_phantom_catalog(tmp_path / "local", n_ct=1, n_mr=0)
    build_phantom_catalog(tmp_path / "s3", n_ct=1, n_mr=0, catalog=s3_catalog_url)
    tables = {}
    for name, catalog in (("local", str(local)), ("s3", s3_catalog_url)):
        out = tmp_path / f"eval-{name}"
        evaluate(catalog, untrained_checkpoint, out, splits=("all",), max_masks=1, seed=0, settings=SETTINGS)
        tables[name] = pd.read_parquet(out / "per_mask.parquet")
    assert len(tables["s3"]) > 0
    pd.testing.assert_frame_equal(tables["s3"], tables["local"])
    assert s3_catalog_url in (tmp_path / "eval-s3" / "report.md").read_text()


def test_the_paper_protocol_can_feed_the_network_every_click_as_the_baseline_gets_them(
    phantom_catalog, untrained_checkpoint, tmp_path, monkeypatch  # noqa: F811
):
    import model.evaluation.evaluate as evaluate_module

    made = []

    class Recording(NetworkMethod):
        def __init__(self, predictor, clicks_fed):
            super().__init__(predictor, clicks_fed)
            made.append(clicks_fed)

    monkeypatch.setattr(evaluate_module, "NetworkMethod", Recording)
    parser = argparse.ArgumentParser(prog="sammed3d")
    add_arguments(parser.add_subparsers(dest="command"))
    args = parser.parse_args([
        "evaluate", "--catalog", str(phantom_catalog), "--checkpoint", str(untrained_checkpoint), "--split", "all",
        "--max-masks", "1", "--out", str(tmp_path / "all"), "--paper-clicks-fed", "all",
    ])
    monkeypatch.setattr(evaluate_module, "EvaluationSettings", lambda **kw: EvaluationSettings(
        paper_clicks=2, challenge_clicks=2, overlay_cases=0, prompt_sensitivity=False, **kw))
    assert run(args) == 0
    assert made == ["all", "all"]  # paper protocol, then challenge
    assert "network gets every click so far" in (tmp_path / "all" / "report.md").read_text()
    with pytest.raises(ValueError, match="paper_clicks_fed"):
        EvaluationSettings(paper_clicks_fed="newest")
