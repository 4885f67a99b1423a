"""`make demo`: SYNTHETIC phantoms -> curate (Prefect flow) -> train vit_tiny on CPU -> evaluate -> report."""

from __future__ import annotations

from pathlib import Path


def run_demo(out: Path, *, train_steps: int = 200, eval_masks: int = 6) -> int:
    """Run the whole product on embedded synthetic data; prints the evaluation report's path at the end."""
    from catalog.report import print_summary
    from flows.curate import curate
    from model.evaluation.evaluate import evaluate
    from model.training.config import TrainConfig
    from model.training.trainer import train
    from pipeline.phantoms import write_phantom_datasets

    data, catalog, run = out / "phantoms", out / "catalog", out / "train"
    # Six CT and five MR cases: enough for each dataset to get one test and one validation case.
    datasets = write_phantom_datasets(data, seed=0, n_ct=6, n_mr=5)
    print(f"wrote SYNTHETIC phantom datasets: {', '.join(d.name for d in datasets)}")
    result = curate(sources=[str(data.resolve())], catalog=str(catalog.resolve()))
    print(f"curated {result['curated']} images into {catalog} ({result['images']} images, {result['masks']} masks)")
    print_summary(catalog)

    config = TrainConfig(catalog=str(catalog), out=str(run), model="vit_tiny", max_steps=train_steps,
                         checkpoint_every=train_steps, num_workers=1, resume=run.exists())
    trained = train(config)
    print(f"trained vit_tiny to step {trained['step']} (loss {trained['loss']:.3f}); checkpoint {trained['checkpoint']}")
    report = evaluate(str(catalog), str(trained["checkpoint"]), str(out / "evaluation"), splits=("test",),
                      max_masks=eval_masks)
    print(f"\nevaluation report (network vs region-growing baseline, test split): {report.resolve()}")
    return 0
