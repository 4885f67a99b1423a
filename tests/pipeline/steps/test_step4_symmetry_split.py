"""Left/right split in patient coordinates, on SYNTHETIC phantoms stored in several orientations."""

import numpy as np
import pytest
import SimpleITK as sitk

from catalog.schema import SPLIT_SIDE_SOURCES
from pipeline.config import CurationConfig
from pipeline.curate import curate_case
from pipeline.geometry import Geometry
from pipeline.phantoms import CT_LABELS, LPS_DIRECTION, RAS_ON_DISK_DIRECTION, write_torso_ct_case
from pipeline.records import CaseRecord, ChannelSource
from pipeline.steps.step2_mask_cleaning import find_components
from pipeline.steps.step4_symmetry_split import SPLIT_SOURCES
from pipeline.laterality.plane import estimate_plane
from pipeline.laterality.surface import CutSurface
from pipeline.steps.step4_symmetry_split import check_sides, split_components_by_side

OBLIQUE = sitk.VersorRigid3DTransform((0.2, 0.1, 0.3), 0.5).GetMatrix()


def phantom_case(tmp_path, direction, kidneys="both", seed=3) -> tuple[CaseRecord, dict]:
    image, label = tmp_path / "img_0000.nii.gz", tmp_path / "img.nii.gz"
    truth = write_torso_ct_case(image, label, seed=seed, direction=direction, kidneys=kidneys)
    names = {v: k for k, v in CT_LABELS.items() if v}
    case = CaseRecord("DatasetTest_SyntheticTorso", "phantom", [ChannelSource(0, "CT", image)], label, names)
    return case, truth


@pytest.mark.parametrize("direction", [LPS_DIRECTION, RAS_ON_DISK_DIRECTION, OBLIQUE], ids=["LPS", "RAS", "oblique"])
def test_split_sides_follow_patient_coordinates(tmp_path, direction):
    case, truth = phantom_case(tmp_path, direction)
    result = curate_case(case, CurationConfig())
    masks = {m["category"]: m for m in result.masks if m["status"] == "kept"}
    for structure in ("kidney", "lung"):
        for side in ("left", "right"):
            mask = masks[f"{structure} {side}"]
            expected = truth["paired"][structure][side]
            assert mask["side_source"] in ("name", "both")
            assert mask["voxels"] == expected["voxels"]
            assert np.allclose(mask["centroid_world_xyz"], expected["centroid_mm"], atol=0.05)
    assert result.images[0].row["flags"] == []


def test_a_mask_on_one_side_only_gets_that_side(tmp_path):
    case, _ = phantom_case(tmp_path, LPS_DIRECTION, kidneys="right")
    categories = {m["category"] for m in curate_case(case, CurationConfig()).masks}
    assert "kidney right" in categories and "kidney left" not in categories


def test_midline_comes_from_the_body_not_the_field_of_view(tmp_path):
    case, truth = phantom_case(tmp_path, RAS_ON_DISK_DIRECTION)
    image = sitk.ReadImage(str(case.channels[0].path))
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(case.label_path)))
    geometry = Geometry.of(image)
    plane = estimate_plane(label, geometry, np.arange(int(label.max()) + 1), image, "CT")
    centre = (np.asarray(label.shape, dtype=float) - 1) / 2
    fov_centre = geometry.index_zyx_to_world(centre)[0]
    assert plane.source == "symmetry"
    assert abs(plane.x_mm - truth["body_midline_x_mm"]) < 3.0
    assert abs(fov_centre - truth["body_midline_x_mm"]) > 20.0


def test_a_piece_straddling_the_midline_is_cut_there():
    label = np.zeros((4, 4, 20), dtype=np.uint8)
    label[1:3, 1:3, 2:18] = 1  # one bar along x, crossing the plane x = 10 mm
    label[1:3, 1:3, 19] = 1  # a small piece wholly on the left
    geometry = Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), LPS_DIRECTION)
    table = find_components(label, 26)
    pieces = split_components_by_side(table, np.arange(1, table.count + 1), CutSurface(geometry, 9.5), 0.1)
    by_side = {(p.component, p.side): p.voxels for p in pieces}
    bar = int(table.components[1, 1, 2])
    assert by_side[(bar, "right")] == 4 * 8 and by_side[(bar, "left")] == 4 * 8
    speck = int(table.components[1, 1, 19])
    assert by_side == {**by_side, (speck, "left"): 4} and (speck, "right") not in by_side


def test_side_check_counts_disagreeing_pairs():
    agree = {"kidney left": np.array([50.0, 0, 0]), "kidney right": np.array([-50.0, 0, 0])}
    disagree = {"lung left": np.array([-40.0, 0, 0]), "lung right": np.array([40.0, 0, 0])}
    assert not check_sides(agree).suspect
    mixed = check_sides({**agree, **disagree})
    assert mixed.pairs == 2 and mixed.disagreeing == ("lung",) and not mixed.suspect
    assert check_sides(disagree).suspect


def test_the_catalog_knows_the_same_split_side_sources_as_step_4():
    # catalog/ may not import pipeline/, so catalog.schema mirrors the step's values.
    assert set(SPLIT_SIDE_SOURCES) == set(SPLIT_SOURCES)
