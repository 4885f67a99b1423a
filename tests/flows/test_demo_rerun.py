"""`make demo` run again after the defaults changed: the earlier training run is kept aside, not resumed."""

from __future__ import annotations

from flows.demo import train_or_continue
from model.network.checkpoint import load_model_weights
from model.training.config import TrainConfig
from model.training.state import list_checkpoints
from tests.model.phantom_catalog import phantom_catalog  # noqa: F401  (fixture)


def _config(catalog, out, **fields) -> TrainConfig:
    return TrainConfig(catalog=str(catalog), out=str(out), categories=["lung left", "aorta"], splits=None,
                       batch_size=2, iterations_per_batch=3, num_workers=0, progress=False, **fields)


def test_a_rerun_continues_its_own_run_and_moves_a_run_of_other_settings_aside(phantom_catalog, tmp_path):  # noqa: F811
    out = tmp_path / "train"
    train_or_continue(_config(phantom_catalog, out, max_steps=1, fine_path=False))  # an earlier version's run
    assert not load_model_weights(list_checkpoints(out)[-1]).fine_path

    result = train_or_continue(_config(phantom_catalog, out, max_steps=1))  # today's defaults: a fine path
    assert (tmp_path / "train.previous-1").is_dir() and list_checkpoints(tmp_path / "train.previous-1")
    assert result["step"] == 1 and load_model_weights(result["checkpoint"]).fine_path

    result = train_or_continue(_config(phantom_catalog, out, max_steps=2))  # the same settings: continued
    assert result["step"] == 2 and not (tmp_path / "train.previous-2").exists()
