"""Training on 128³ patches read from the catalog.

``patch_dataset`` (samples: patch, target, flips), ``patch_loader`` (batches through a shared-memory
ring), ``click_loop`` (encode once, decode per simulated click), ``batching`` (epoch order, click seeds),
``schedule`` (cyclic step decay), ``config`` (``TrainConfig``), ``state`` (resumable checkpoints),
``distributed`` (torchrun / DDP), ``trainer`` (the loop and the ``sammed3d train`` command).
"""
