from dataclasses import replace

from pipeline.config import CurationConfig
from pipeline.io import HeaderInfo
from pipeline.steps.step1_meta_filter import check_image_header, check_label_matches_image

CONFIG = CurationConfig()
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def header(size=(100, 100, 50), spacing=(1.0, 1.0, 2.0), dimension=3, components=1, origin=(0.0, 0.0, 0.0)):
    return HeaderInfo("x.nii.gz", dimension, size, spacing, origin, IDENTITY, components, "16-bit signed integer")


def test_a_normal_image_passes():
    assert check_image_header(header(), CONFIG) is None


def test_a_three_slice_image_is_rejected_for_its_extent():
    reason = check_image_header(header(size=(512, 512, 3), spacing=(0.8, 0.8, 1.0)), CONFIG)
    assert "physical extent" in reason and "z=3.0 mm" in reason


def test_small_volume_is_rejected_even_when_each_axis_is_long_enough():
    config = CurationConfig(min_volume_cm3=100.0)
    reason = check_image_header(header(size=(20, 20, 20), spacing=(1.0, 1.0, 1.0)), config)
    assert "physical volume 8.000 cm³" in reason


def test_4d_and_vector_images_are_rejected():
    assert "4D" in check_image_header(header(dimension=4, size=(10, 10, 10, 3)), CONFIG)
    assert "4D" in check_image_header(header(components=3), CONFIG)


def test_non_finite_spacing_is_rejected():
    assert "spacing" in check_image_header(header(spacing=(1.0, float("nan"), 1.0)), CONFIG)


def test_label_geometry_must_match_the_image():
    image = header()
    assert check_label_matches_image(image, image, CONFIG) is None
    assert "size mismatch" in check_label_matches_image(image, header(size=(100, 100, 49)), CONFIG)
    assert "origin mismatch" in check_label_matches_image(image, header(origin=(0.0, 5.0, 0.0)), CONFIG)
    assert "spacing mismatch" in check_label_matches_image(image, header(spacing=(1.0, 1.0, 2.5)), CONFIG)
    flipped = replace(image, direction=(-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
    assert "direction mismatch" in check_label_matches_image(image, flipped, CONFIG)
