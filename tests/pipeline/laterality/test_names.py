import pytest

from pipeline.laterality.names import LateralityNames, default_laterality_names, laterality_names_for
from pipeline.vocabulary import parse_label_name


@pytest.mark.parametrize(
    "raw, kind",
    [
        ("Kidney", "paired"),
        ("lung_upper_lobe", "paired"),
        ("kidney_cyst", "paired"),
        ("Cerebral-White-Matter", "paired"),  # FreeSurfer aseg, sides merged
        ("Accumbens-area", "paired"),
        ("ctx-precentral", "paired"),  # FreeSurfer cortical parcel without its hemisphere
        ("superiorfrontal", "paired"),  # Desikan-Killiany
        ("Frontal_Sup_Medial", "paired"),  # AAL
        ("Cerebelum_4_5", "paired"),
        ("Vermis_4_5", "midline"),
        ("Brain-Stem", "midline"),
        ("CC_Mid_Anterior", "midline"),
        ("3rd-Ventricle", "midline"),
        ("vertebrae_L5", "midline"),
        ("spinal_cord", "midline"),
        ("urinary_bladder", "midline"),
        ("aorta", "midline"),
        ("liver", "single"),
        ("lung_nodule", "single"),  # longest entry wins over "lung"
        ("kidney_tumor", "single"),
        ("brain", "single"),
        ("hippocampus", "paired"),
        ("structure 7", None),
        ("hip_joint_thing", "paired"),
    ],
)
def test_names_say_paired_midline_single_or_nothing(raw, kind):
    assert default_laterality_names().kind_of(parse_label_name(raw).base) == kind


def test_whole_words_only_and_config_adds_paired_names():
    names = default_laterality_names()
    assert names.kind_of("hippocampus") == "paired" and names.kind_of("hipster") is None
    extended = laterality_names_for(("hipster",))
    assert extended.kind_of("hipster left part") == "paired"
    assert extended.kind_of("liver") == "single", "configured names do not override the vocabularies"


def test_an_unknown_list_is_a_clear_error():
    with pytest.raises(ValueError, match="laterality lists must be among"):
        LateralityNames({"paired": ["kidney"], "bilateral": ["lung"]})
