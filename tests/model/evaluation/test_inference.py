"""Inference from clicks on image files: geometry of the written mask, window following, bad input."""

import argparse

import cc3d
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from model.clicks import challenge_click
from model.evaluation.crop import PatchGrid
from model.evaluation.inference import add_arguments, run, segment, segment_image
from model.evaluation.metrics import dice
from pipeline.geometry import Geometry
from pipeline.phantoms import CT_LABELS, make_torso_ct_case

LAS = np.diag([-1.0, 1.0, 1.0])


@pytest.fixture(scope="module")
def las_phantom(tmp_path_factory):
    """A SYNTHETIC torso CT stored LAS (not LPS) on a coarse grid; returns (image path, liver click (z, y, x))."""
    image, label, _ = make_torso_ct_case(seed=3, size=(64, 64, 48), spacing=(3.75, 3.75, 4.0), direction=LAS)
    path = tmp_path_factory.mktemp("las") / "phantom_ct_las.nii.gz"
    sitk.WriteImage(image, str(path))
    liver = sitk.GetArrayFromImage(label) == CT_LABELS["liver"]
    click, _ = challenge_click(None, liver)
    return path, click


def test_segment_writes_a_mask_with_the_image_geometry_inside_the_windows(las_phantom, untrained_checkpoint, tmp_path):
    path, click = las_phantom
    out = tmp_path / "masks" / "liver.nii.gz"
    result = segment(path, [click], checkpoint=untrained_checkpoint, out_path=out, max_windows=3, device="cpu")
    image, written = sitk.ReadImage(str(path)), sitk.ReadImage(str(out))
    assert written.GetSize() == image.GetSize()
    assert np.allclose(written.GetSpacing(), image.GetSpacing())
    assert np.allclose(written.GetOrigin(), image.GetOrigin())
    assert np.allclose(written.GetDirection(), image.GetDirection())
    mask = sitk.GetArrayFromImage(written).astype(bool)
    assert mask.any() and np.array_equal(mask, sitk.GetArrayFromImage(result.mask).astype(bool))
    assert 1 <= len(result.windows) <= 3 and result.unused_clicks == []
    # The first window is centred on the click; every mask voxel lies inside one of the windows.
    geometry = Geometry.of(image)
    assert np.allclose(result.windows[0], geometry.index_zyx_to_world(click))
    world = geometry.index_zyx_to_world(np.argwhere(mask))
    covered = np.zeros(len(world), dtype=bool)
    for centre in result.windows:
        grid = PatchGrid.centred_on(centre, image.GetDirection())
        covered |= grid.contains_index(grid.world_to_index_zyx(world))
    assert covered.all()


def test_world_clicks_give_the_same_mask_as_voxel_clicks(las_phantom, untrained_checkpoint, tmp_path):
    path, click = las_phantom
    world = Geometry.of(sitk.ReadImage(str(path))).index_zyx_to_world(click)
    by_voxel = segment(path, [click], checkpoint=untrained_checkpoint, out_path=tmp_path / "a.nii.gz", max_windows=1)
    by_world = segment(path, [world], world=True, checkpoint=untrained_checkpoint, out_path=tmp_path / "b.nii.gz",
                       max_windows=1)
    assert np.array_equal(sitk.GetArrayFromImage(by_voxel.mask), sitk.GetArrayFromImage(by_world.mask))


class ThresholdingPredictorStandIn:
    """MODEL STAND-IN for the window-following test only: an untrained network cannot segment a long bar.

    It returns the true mask of the current window, computed from the patch itself: the 6-connected
    component, holding the first positive click, of the voxels brighter than halfway between the
    patch's median (tissue) and maximum (bar), as +/-20 logits. So
    what the test checks is the window logic of ``segment_image`` (which windows, which clicks,
    pasting back and joining), not the network.
    """

    def set_image(self, patch):
        values = patch.numpy()
        self.bright = values > (np.median(values) + values.max()) / 2

    def predict(self, points, labels, box=None, mask_input=None, multimask=False):
        components = cc3d.connected_components(self.bright, connectivity=6)
        first = np.rint(np.asarray(points)[np.asarray(labels) == 1][0]).astype(int)
        inside = components == components[tuple(first)] if components[tuple(first)] else np.zeros_like(self.bright)
        logits = torch.from_numpy(np.where(inside, 20.0, -20.0).astype(np.float32))[None, None]
        return logits, torch.ones(1, 1), torch.zeros(1, 1, 32, 32, 32)


def oblique_bar_image() -> tuple[sitk.Image, np.ndarray]:
    """A 20 x 20 mm bar, 420 mm long along world z, in an oblique image (rotated 20 degrees about x), 2 mm voxels.

    Returns the image (soft tissue 40 HU, bar 400 HU) and the bar's (z, y, x) mask.
    """
    angle = np.radians(20.0)
    direction = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    size_xyz, spacing = np.array([40, 70, 260]), 2.0
    origin = -(direction * spacing) @ ((size_xyz - 1) / 2)
    iz, iy, ix = np.meshgrid(*(np.arange(n, dtype=float) for n in size_xyz[::-1]), indexing="ij")
    step = direction * spacing
    world = [origin[r] + step[r, 0] * ix + step[r, 1] * iy + step[r, 2] * iz for r in range(3)]
    bar = (np.abs(world[0]) <= 10) & (np.abs(world[1]) <= 10) & (np.abs(world[2]) <= 210)
    image = sitk.GetImageFromArray(np.where(bar, 400, 40).astype(np.int16))
    image.SetSpacing((spacing,) * 3)
    image.SetOrigin(origin.tolist())
    image.SetDirection(direction.ravel().tolist())
    return image, bar


def test_windows_follow_a_target_longer_than_one_window():
    image, bar = oblique_bar_image()
    click = np.array([[0.0, 0.0, 30.0]])  # world mm, on the bar's axis
    predictor = ThresholdingPredictorStandIn()
    one = segment_image(image, click, [1], predictor, "CT", max_windows=1)
    followed = segment_image(image, click, [1], predictor, "CT", max_windows=8)
    one_mask = sitk.GetArrayFromImage(one.mask).astype(bool)
    followed_mask = sitk.GetArrayFromImage(followed.mask).astype(bool)
    assert len(one.windows) == 1 and dice(one_mask, bar) < 0.7, "a 192 mm window cannot hold a 420 mm bar"
    assert len(followed.windows) > 1
    assert dice(followed_mask, bar) > 0.95
    # The windows moved both ways along the bar: up and down from the click, half a window per step.
    window_z = sorted(float(w[2]) for w in followed.windows)
    assert window_z[0] < 30.0 - 90.0 and window_z[-1] > 30.0 + 90.0


def test_bad_clicks_files_and_checkpoints_are_one_sentence_errors(las_phantom, untrained_checkpoint, tmp_path):
    path, click = las_phantom
    out = tmp_path / "mask.nii.gz"
    with pytest.raises(ValueError, match=r"click \(500.0, 1.0, 1.0\) voxels \(z, y, x\) lies outside the image"):
        segment(path, [[500.0, 1.0, 1.0]], checkpoint=untrained_checkpoint, out_path=out)
    with pytest.raises(ValueError, match="mm .* lies outside the image"):
        segment(path, [[0.0, 0.0, 5000.0]], world=True, checkpoint=untrained_checkpoint, out_path=out)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        segment(tmp_path / "missing.nii.gz", [click], checkpoint=untrained_checkpoint, out_path=out)
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="is not a usable model checkpoint"):
        segment(path, [click], checkpoint=bad, out_path=out)
    with pytest.raises(ValueError, match="first click must be positive"):
        segment(path, [click], labels=[0], checkpoint=untrained_checkpoint, out_path=out)
    assert not out.exists()


def test_cli_keeps_the_order_of_positive_and_negative_clicks(las_phantom, untrained_checkpoint, tmp_path, capsys):
    path, click = las_phantom
    parser = argparse.ArgumentParser(prog="sammed3d")
    add_arguments(parser.add_subparsers(dest="command"))
    z, y, x = (int(v) for v in click)
    args = parser.parse_args(
        ["segment", str(path), "--point", f"{z},{y},{x}", "--negative", "1,2,3", "--point", f"{z},{y},{x + 1}",
         "--checkpoint", str(untrained_checkpoint), "-o", str(tmp_path / "m.nii.gz"), "--max-windows", "1"]
    )
    assert args.clicks == [([z, y, x], 1), ([1.0, 2.0, 3.0], 0), ([z, y, x + 1], 1)]
    assert run(args) == 0
    assert "wrote" in capsys.readouterr().out and (tmp_path / "m.nii.gz").exists()
    with pytest.raises(SystemExit):
        parser.parse_args(["segment", str(path), "--point", "1,2", "--checkpoint", "c", "-o", "m"])
