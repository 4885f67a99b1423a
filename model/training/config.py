"""Typed training configuration, with the SAM-Med3D paper's defaults and a comment where we differ."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from catalog.store.location import CatalogLocation
from model.network.registry import MODEL_REGISTRY
from pipeline.config import read_config_mapping

# Fields a resumed run may change: they do not alter what is computed, only how long, how often it is
# recorded, and how the work is spread over processes.
RESUMABLE_CHANGES = frozenset(
    {
        "max_steps", "max_minutes", "checkpoint_every", "checkpoint_minutes", "keep_checkpoints", "log_every",
        "num_workers", "patch_cache_mb", "progress", "device", "resume",
    }
)

# Named training recipes: the settings each one fixes unless the configuration sets them itself.
# "paper" is SAM-Med3D's recipe as this trainer configures it; "promptable" (the default) is the one that
# yields a model that follows its clicks at small scale. docs/training.md has the measurements behind it.
RECIPES: dict[str, dict[str, Any]] = {
    "paper": {
        "click_map": False,
        "fine_path": False,
        "fine_clicks": False,
        "iterations_per_batch": 11,
        "lr": 8e-4,
        "other_lr_scale": 0.1,
        "schedule": "cyclic_step",
        "warmup_steps": 0,
        "loss_resolution": "patch",
        "new_click_only_fraction": 0.0,
    },
    "promptable": {
        "click_map": True,
        "fine_path": True,
        "fine_clicks": True,
        "iterations_per_batch": 5,
        "lr": 5e-4,
        "other_lr_scale": 1.0,
        "schedule": "warmup_constant_decay",
        "warmup_steps": 50,
        "loss_resolution": "lowres",
        "new_click_only_fraction": 0.5,
    },
}
DEFAULT_RECIPE = "promptable"
# What a configuration saved before recipes existed meant by the settings it lacks: the paper's recipe.
SETTINGS_BEFORE_RECIPES: dict[str, Any] = {"recipe": "paper", **RECIPES["paper"]}


class TrainConfig(BaseModel):
    """Everything a training run needs. Units: learning rates per optimiser step; steps count optimiser steps.

    A step consumes ``batch_size * grad_accum_steps`` samples in each of the ``WORLD_SIZE`` processes.
    ``recipe`` names a set of defaults (:data:`RECIPES`) for the settings it lists; a setting given
    explicitly wins over the recipe's value.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    catalog: str = Field(description="catalog folder or s3://bucket/prefix (sammed3d curate output)")
    out: str = Field(description="run folder: checkpoints/, metrics.jsonl, config.yaml")
    # The paper trains vit_b_ori; vit_tiny is the default here because the default machine is a CPU.
    model: str = "vit_tiny"
    recipe: Literal["paper", "promptable"] = DEFAULT_RECIPE
    # Not in the paper: clicks also encoded densely on the token grid (model.network.prompt_encoder.ClickMap).
    click_map: bool = RECIPES[DEFAULT_RECIPE]["click_map"]
    # Not in the paper: the decoder also reads the image and the mask prompt at mask resolution
    # (model.network.mask_decoder.FinePath).
    fine_path: bool = RECIPES[DEFAULT_RECIPE]["fine_path"]
    # Not in the paper: the fine path also reads the clicks at mask resolution and mixes its features with the
    # upscaled tokens' (model.network.mask_decoder.FinePath); needs fine_path.
    fine_clicks: bool = RECIPES[DEFAULT_RECIPE]["fine_clicks"]
    # Fine-tuning: start from these weights (our checkpoint, or a published SAM-Med3D vit_b_ori .pth). The
    # file's architecture wins over `model`, `click_map` and `fine_path`, and its convention is kept: published weights
    # train on published-convention crops (model.input_convention).
    init: str | None = Field(None, description="weights to start from (ours or a published SAM-Med3D file)")

    # Which masks to train on (pandas filters on masks.parquet; None = all).
    categories: list[str] | None = None
    groups: list[str] | None = None
    modalities: list[str] | None = None
    datasets: list[str] | None = None
    splits: list[str] | None = ["train"]
    # Whole cases ("dataset/case_id") never trained on, with every case that is the same scan (held out).
    exclude_cases: list[str] | None = None
    min_mask_voxels: int = Field(1000, ge=1, description="paper: crops holding fewer mask voxels are rejected")

    patch_size: int = Field(128, ge=16, description="patch edge in stored voxels (1.5 mm); must match the model")
    # Not in the paper's code, which always centres the target (a location prior the model then relies on).
    jitter: bool = True
    flips: bool = True

    batch_size: int = Field(2, ge=1, description="samples per process per micro-batch")
    max_steps: int = Field(1000, ge=1)
    max_minutes: float | None = Field(None, gt=0, description="also stop after this many minutes of training")
    iterations_per_batch: int = Field(
        RECIPES[DEFAULT_RECIPE]["iterations_per_batch"], ge=3, description="click iterations per batch (paper: 11)"
    )
    lr: float = Field(RECIPES[DEFAULT_RECIPE]["lr"], gt=0, description="image encoder learning rate (paper: 8e-4)")
    other_lr_scale: float = Field(
        RECIPES[DEFAULT_RECIPE]["other_lr_scale"], gt=0,
        description="prompt encoder and mask decoder lr = lr x this (paper: 0.1)",
    )
    weight_decay: float = Field(0.1, ge=0, description="AdamW (paper)")
    schedule: Literal["cyclic_step", "warmup_constant", "warmup_constant_decay"] = Field(
        RECIPES[DEFAULT_RECIPE]["schedule"],
        description="cyclic_step: the paper's lr / 10 at 60/80/95% of each cycle; warmup_constant: linear warm-up, "
        "then constant; warmup_constant_decay: the same, then linear to 0 over the last decay_fraction of max_steps",
    )
    # Only for warmup_constant_decay. The decay ends at max_steps: a run stopped earlier by max_minutes never
    # decays, so give max_steps what the time budget can reach.
    decay_fraction: float = Field(0.3, gt=0, le=1, description="share of max_steps over which the lr decays to 0")
    warmup_steps: int = Field(RECIPES[DEFAULT_RECIPE]["warmup_steps"], ge=0, description="linear lr warm-up")
    # Paper: 4 cycles of 200 epochs. None = max_steps / 4, i.e. 4 cycles over the run.
    cycle_steps: int | None = Field(None, ge=1)
    new_click_only_fraction: float = Field(
        RECIPES[DEFAULT_RECIPE]["new_click_only_fraction"], ge=0, le=1,
        description="share of the decodes after the first that get only the newest click (and the mask prompt) "
        "instead of all clicks so far, as the paper's evaluation feeds them",
    )
    loss_resolution: Literal["patch", "lowres"] = Field(
        RECIPES[DEFAULT_RECIPE]["loss_resolution"],
        description="patch: logits upsampled to the patch vs the target (paper); lowres: the 32³ logits vs the "
        "target averaged to 32³",
    )
    grad_accum_steps: int = Field(1, ge=1)
    num_workers: int = Field(2, ge=0, description="DataLoader worker processes per training process")
    patch_cache_mb: int = Field(
        512, ge=0, description="MiB of decoded catalog chunks each DataLoader worker keeps (0: decode every patch)"
    )
    # Not in the paper: half the bytes a DataLoader worker hands over; the step runs in float32 or bf16.
    patch_image_dtype: Literal["float16", "bfloat16", "float32"] = Field(
        "float16", description="dtype of the normalised image patches handed from the DataLoader workers"
    )
    seed: int = 0
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto: bf16 autocast on CUDA, fp32 on CPU")
    checkpoint_every: int = Field(500, ge=1, description="steps between checkpoints (one is always written at the end)")
    checkpoint_minutes: float | None = Field(None, gt=0, description="also write a checkpoint every this many minutes")
    keep_checkpoints: int = Field(2, ge=1, description="newest checkpoints kept in out/checkpoints")
    log_every: int = Field(10, ge=1, description="steps between lines of out/metrics.jsonl")
    device: str = Field("auto", description="auto (cuda when available), cpu, cuda, cuda:N")
    resume: bool = Field(False, description="continue from the newest checkpoint in out")
    progress: bool = Field(True, description="show a progress bar (rank 0)")

    @model_validator(mode="before")
    @classmethod
    def _apply_recipe(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        recipe = data.get("recipe", DEFAULT_RECIPE)
        if recipe not in RECIPES:
            raise ValueError(f"unknown recipe {recipe!r}; known: {sorted(RECIPES)}")
        given = {k: v for k, v in data.items() if v is not None or k not in RECIPES[recipe]}
        resolved = {**RECIPES[recipe], **given}
        # The clicks enter the decoder through the fine path: switching the fine path off switches off the
        # recipe's fine clicks too, unless they are asked for (then the configuration is refused, below).
        if "fine_clicks" not in given and not resolved.get("fine_path", False):
            resolved["fine_clicks"] = False
        return resolved

    @model_validator(mode="after")
    def _known_model(self) -> "TrainConfig":
        CatalogLocation.parse(self.catalog)  # another scheme than s3:// is a clear error, not a folder "gs:"
        if self.model not in MODEL_REGISTRY:
            raise ValueError(f"unknown model {self.model!r}; known: {sorted(MODEL_REGISTRY)}")
        if self.fine_clicks and not self.fine_path:
            raise ValueError("fine_clicks needs fine_path: the clicks enter the decoder through the fine path")
        return self

    @property
    def resolved_cycle_steps(self) -> int:
        """Steps per learning-rate cycle."""
        return self.cycle_steps or max(1, self.max_steps // 4)

    @classmethod
    def from_file(cls, path: str | Path, **overrides) -> "TrainConfig":
        """Read a YAML (or JSON) mapping of fields; ``overrides`` (e.g. from the command line) win."""
        return cls(**{**read_config_mapping(path), **overrides})
