"""Fine-tuning from given weights: ``train --init`` keeps the file's architecture and convention, resume keeps
them, and evaluate / segment take the same files, on the SYNTHETIC phantom catalog.

The published-format test uses a real vit_b_ori file (the stand-in weights of the published-parity fixtures),
so it costs a few vit_b steps on the CPU; the tiny one runs the same path on a vit_tiny of the published
convention written in our format.
"""

from __future__ import annotations

import argparse

import pandas as pd
import pytest
import SimpleITK as sitk
import torch

from catalog.reader import Catalog
from model import build_model, save_checkpoint
from model.evaluation.evaluate import evaluate
from model.evaluation.inference import segment
from model.evaluation.protocol import EvaluationSettings
from model.network.checkpoint import load_model_weights, read_checkpoint
from model.training.config import TrainConfig
from model.training.state import list_checkpoints
from model.training.trainer import add_arguments, config_from_args, train
from tests.model.phantom_catalog import phantom_catalog  # noqa: F401  (session fixture)
from tests.model.published_fixture import published_state_dict

SETTINGS = EvaluationSettings(paper_clicks=2, challenge_clicks=1, overlay_cases=0, prompt_sensitivity=False)


def _config(catalog, out, init, **fields) -> TrainConfig:
    return TrainConfig(**{
        "catalog": str(catalog), "out": str(out), "init": str(init), "categories": ["aorta"], "splits": None,
        "batch_size": 1, "iterations_per_batch": 3, "num_workers": 0, "progress": False, "log_every": 1,
        "max_steps": 1, **fields,
    })


def _finetune_resume_evaluate_segment(catalog, init, tmp_path, capsys) -> dict:
    """One step from `init`, one more on resume, then evaluate and segment with the result."""
    first = train(_config(catalog, tmp_path / "run", init))
    log = capsys.readouterr().out
    resumed = train(_config(catalog, tmp_path / "run", init, max_steps=2, resume=True))
    checkpoint = resumed["checkpoint"]
    assert resumed["step"] == 2 and len(list_checkpoints(tmp_path / "run")) == 2
    evaluate(catalog, checkpoint, tmp_path / "eval", splits=("all",), max_masks=1, seed=0, settings=SETTINGS,
             device="cpu")
    steps = pd.read_parquet(tmp_path / "eval" / "per_step.parquet")
    assert set(steps.method) == {"network", "baseline"}
    assert steps[["dice_crop", "dice_original"]].apply(lambda c: c.between(0, 1)).all().all()

    images = Catalog(catalog).images()
    row = images[images.status == "kept"].iloc[0]
    image_path = row.image_path
    image = sitk.ReadImage(str(image_path))
    centre = [s // 2 for s in image.GetSize()[::-1]]
    result = segment(image_path, [centre], checkpoint=checkpoint, out_path=tmp_path / "mask.nii.gz", max_windows=1,
                     device="cpu")
    assert result.mask.GetSize() == image.GetSize() and len(result.windows) == 1
    return {"first": first, "resumed": resumed, "log": log, "checkpoint": checkpoint}


def test_init_from_our_published_convention_checkpoint_keeps_it(phantom_catalog, tmp_path, capsys):  # noqa: F811
    torch.manual_seed(0)
    init = tmp_path / "tiny_published.pt"
    start = build_model("vit_tiny", attention_mode="reference", convention="published")
    save_checkpoint(init, start)
    run = _finetune_resume_evaluate_segment(phantom_catalog, init, tmp_path, capsys)
    payload = read_checkpoint(run["checkpoint"])
    assert (payload["model_name"], payload["convention"], payload["click_map"]) == ("vit_tiny", "published", False)
    assert (
        "training its architecture (vit_tiny, click_map=False, convention published, fine_path=False, "
        "fine_clicks=False)"
    ) in run["log"]
    trained = load_model_weights(run["checkpoint"])
    moved = [n for n, v in trained.state_dict().items() if not torch.equal(v, start.state_dict()[n])]
    assert moved, "two training steps changed no weight"


@pytest.mark.slow
def test_init_from_a_published_file_fine_tunes_resumes_evaluates_and_segments(
    phantom_catalog, tmp_path, capsys  # noqa: F811
):
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    init = tmp_path / "sam_med3d_standin.pth"
    torch.save({"model_state_dict": published_state_dict(), "epoch": 0, "args": argparse.Namespace(lr=1e-4)}, init)
    run = _finetune_resume_evaluate_segment(phantom_catalog, init, tmp_path, capsys)
    payload = read_checkpoint(run["checkpoint"])
    # The default recipe asks for a click map; the published architecture (none) wins, and its convention.
    assert (payload["model_name"], payload["attention_mode"]) == ("vit_b_ori", "reference")
    assert (payload["convention"], payload["click_map"]) == ("published", False)
    assert "the configuration's model=vit_tiny / click_map=True / fine_path=True / fine_clicks=True do not apply" in (
        run["log"]
    )


def test_cli_takes_init(tmp_path):
    parser = argparse.ArgumentParser()
    add_arguments(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "--catalog", "c", "--out", "o", "--init", "weights.pth"])
    assert config_from_args(args).init == "weights.pth"
