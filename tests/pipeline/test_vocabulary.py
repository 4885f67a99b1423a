import pytest

from pipeline.vocabulary import UNKNOWN_GROUP, default_vocabulary, parse_label_name


@pytest.mark.parametrize(
    "raw, category, side",
    [
        ("kidney_left", "kidney left", "left"),
        ("Kidney_Right", "kidney right", "right"),
        ("rib_left_1", "rib 1 left", "left"),
        ("Precentral_L", "precentral left", "left"),
        ("Frontal_Sup_Orb_R", "frontal sup orb right", "right"),
        ("Left-Cerebral-White-Matter", "cerebral white matter left", "left"),
        ("vertebrae_L5", "vertebrae l5", None),
        ("lung_middle_lobe_right", "lung middle lobe right", "right"),
        ("3rd-Ventricle", "3rd ventricle", None),
        ("liver", "liver", None),
        ("ctx-lh-precentral", "ctx precentral left", "left"),
        ("ctx_rh_G_front_middle", "ctx g front middle right", "right"),
        ("wm-lh-insula", "wm insula left", "left"),
    ],
)
def test_parse_label_name_puts_the_side_last(raw, category, side):
    parsed = parse_label_name(raw)
    assert parsed.category == category
    assert parsed.side == side


@pytest.mark.parametrize(
    "base, group",
    [
        ("liver", "abdomen&thorax"),
        ("lung upper lobe", "abdomen&thorax"),
        ("vertebrae l5", "bone"),
        ("rib 1", "bone"),
        ("gluteus maximus", "muscle"),
        ("aorta", "vessel"),
        ("adrenal gland", "gland"),
        ("enhancing tumor", "lesion"),
        ("heart", "cardiac"),
        ("precentral", "brain"),
        ("cerebelum 4 5", "brain"),
    ],
)
def test_groups_of_known_names(base, group):
    assert default_vocabulary().group_of(base) == group


def test_unknown_names_are_kept_with_group_other():
    vocabulary = default_vocabulary()
    assert vocabulary.group_of("flux capacitor") == UNKNOWN_GROUP
    assert not vocabulary.is_known("flux capacitor")
