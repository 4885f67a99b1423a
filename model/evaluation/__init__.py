"""Evaluation and inference.

``crop`` (128³ patch grids, paste-back into the original image), ``metrics`` (Dice, NSD, click-curve
AUC), ``baseline`` (region growing from clicks), ``protocol`` (the paper's and the CVPR 2025 click
protocols over catalog masks), ``report`` (tables, plots, Markdown), ``evaluate`` (the ``sammed3d
evaluate`` command), ``inference`` (``sammed3d segment``: clicks on a new image, no ground truth).
"""
