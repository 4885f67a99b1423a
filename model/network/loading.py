"""One entry point for every weight file a user hands us: our checkpoints and the published SAM-Med3D ones.

``load_network(path)`` opens the file once with ``weights_only=True`` (refusing arbitrary pickled objects,
with the reason), then rebuilds the network the file describes: ours from its recorded name, attention
mode, click map and convention; a published ``vit_b_ori`` file (SAM-Med3D, SAM-Med3D-turbo) as
``convention="published"``, no click map.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from model.network.checkpoint import CHECKPOINT_FORMAT, model_from_payload
from model.network.published import load_published_checkpoint, open_checkpoint_file
from model.network.sam3d import Sam3D


def load_network(path: str | os.PathLike) -> Sam3D:
    """The network stored in a checkpoint file of ours or in the published layout, on CPU.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a file that needs arbitrary pickled objects, or whose keys or shapes match neither
            format (the message names them).
    """
    payload = open_checkpoint_file(path)
    if isinstance(payload, Mapping) and payload.get("format") == CHECKPOINT_FORMAT:
        return model_from_payload(payload)
    model, _ = load_published_checkpoint(payload)
    return model
