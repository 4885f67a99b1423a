"""The published-parity fixtures (``../shared/fixtures/published_parity``): stand-in weights and expectations.

Read-only, found next to the sample data (or at ``$SAMMED3D_PUBLISHED_FIXTURES``). Missing: a failure under
CI=true, a skip elsewhere, like the sample data.
"""

from __future__ import annotations

import importlib.util
import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO_ROOT

FIXTURES_ENV = "SAMMED3D_PUBLISHED_FIXTURES"


def fixtures_dir() -> Path:
    default = REPO_ROOT.parent / "shared" / "fixtures" / "published_parity"
    return Path(os.environ.get(FIXTURES_ENV, default)).resolve()


def require_fixtures() -> Path:
    """The fixture folder; fails under CI=true and skips elsewhere when it is missing."""
    path = fixtures_dir()
    if not (path / "expected.npz").is_file() or not (path / "recipe.py").is_file():
        message = f"published parity fixtures not found at {path} (set {FIXTURES_ENV})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@lru_cache(maxsize=1)
def recipe():
    """The fixtures' recipe.py as a module (stand-in weights, parity image, prompt cases)."""
    spec = importlib.util.spec_from_file_location("published_parity_recipe", require_fixtures() / "recipe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def expected() -> dict[str, np.ndarray]:
    with np.load(require_fixtures() / "expected.npz") as data:
        return {key: data[key] for key in data.files}


def published_state_dict():
    """The stand-in weights as a published ``vit_b_ori`` state dict {key: tensor}."""
    shapes = json.loads(bytes(expected()["keys_json"]).decode())
    return recipe().published_state_dict(shapes)


def pipeline_case(name: str) -> dict[str, np.ndarray]:
    with np.load(require_fixtures() / f"pipeline_{name}.npz") as data:
        return {key: data[key] for key in data.files}


def parity_errors(model) -> dict[str, float]:
    """Worst |ours - published| / max |published| of every output recorded in ``expected.npz``.

    Runs ``model.encode`` on the parity image and ``model.decode`` on every prompt case, float32 on CPU, in
    eval mode; mask-prompt cases feed channel 0 of the previous case's logits (as recorded). Keys:
    ``image_embedding``, ``case{i}_lowres``, ``case{i}_iou``; ``case{i}_mask_voxels`` holds the absolute
    difference of the voxel counts after upsampling.
    """
    import torch

    ref, cases = expected(), recipe().PROMPT_CASES
    model = model.eval()

    def relative(ours: torch.Tensor, key: str) -> float:
        published = torch.from_numpy(ref[key])
        return float((ours - published).abs().max() / published.abs().max())

    errors = {}
    with torch.no_grad():
        embedding = model.encode(torch.from_numpy(recipe().parity_image())[None, None])
        errors["image_embedding"] = relative(embedding, "image_embedding")
        previous = None
        for i, case in enumerate(cases):
            mask_prompt = previous[:, :1] if case.get("mask_from_previous") else None
            logits, iou = model.decode(
                embedding,
                torch.tensor([case["points_zyx"]], dtype=torch.float32),
                torch.tensor([case["labels"]]),
                mask_prompt=mask_prompt,
                multimask=bool(case.get("multimask", False)),
            )
            errors[f"case{i}_lowres"] = relative(logits, f"case{i}_lowres")
            errors[f"case{i}_iou"] = relative(iou, f"case{i}_iou")
            voxels = int((model.upsample(logits[:, :1]) > 0).sum())
            errors[f"case{i}_mask_voxels"] = float(abs(voxels - int(ref[f"case{i}_mask_voxels"])))
            previous = logits
    return errors
