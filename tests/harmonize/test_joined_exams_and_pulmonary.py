"""Two exams joined in one description, and "PULMONARY" on CT, read as MIDRC's curators read them.

Descriptions are real pairs from MIDRC's StudyDescriptions_Gen3.tsv and its curated table.
"""

from __future__ import annotations

import pytest

from radcommons.harmonize import Matcher, builtin_table
from radcommons.harmonize.normalize import canonical_tokens, exams_named
from radcommons.harmonize.rules import code_features, features, fit


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return Matcher(builtin_table())


def test_a_method_word_after_a_join_starts_another_exam() -> None:
    assert exams_named("CTA CHEST AND CT ABDOMEN AND PELVIS W CONT") == 2
    assert exams_named("MRI BRAIN, MRA BRAIN, MRA NECK - WITHOUT AND WITH CONTRAST") == 3
    assert exams_named("CCTA HEART W CONTRAST+CT CHEST WO CONTRST-CT SURGERY") == 2
    # One exam: the PET of PET/CT and SPECT/CT states no region of its own; a region after a
    # comma or "W/" starts no exam.
    assert exams_named("PET/CT FDG TUMOR IMAGING PET SKULL BASE TO MID THIGH WITH CT") == 1
    assert exams_named("NUC MED SPECT/CT SINGLE DAY - PYP") == 0  # no region at all
    assert exams_named("CT CHEST W, ABDOMEN PELVIS WWO") == 1
    assert exams_named("PET LUNG CANCER OR PULMONARY NODULE (W/LOW DOSE CT)") == 1
    # The canonical words say so, so a single exam's curated row is no "same words" answer.
    assert "EXAMS#2" in canonical_tokens("CTA CHEST AND CT ABDOMEN AND PELVIS W CONT", "CT")


def test_a_word_like_the_joined_exams_marker_is_only_a_word(matcher: Matcher) -> None:
    # A word of the text is no count of exams: it once raised ValueError ("EXAMSX"), which ended
    # a whole map run, or read one exam as two ("EXAMS2").
    assert features("XR CHEST EXAMSX", "CT").exams == 1
    assert features("XR CHEST EXAMS2", "DX").exams == 1
    assert "EXAMS#2" not in canonical_tokens("XR CHEST EXAMS2", "DX")
    assert matcher.match("CT", "XR CHEST EXAMSX").code
    assert matcher.match("DX", "XR CHEST EXAMS2").code


def test_joined_exams_fit_only_a_code_of_that_combination() -> None:
    joined = features("CTA CHEST AND CT ABDOMEN AND PELVIS W CONT", "CT")
    # Read as one angiogram of the three regions it fitted this code exactly (answered at 0.96).
    assert fit(joined, code_features("CTA Chest vessels and Abdominal vessels and Pelvis vessels W contrast IV")) is None
    combination = "CT Abdomen and Pelvis and CT angiogram Abdominal aorta WO and W contrast IV"
    assert code_features(combination).exams == 2
    assert fit(features(combination, "CT"), code_features(combination)) is not None
    # One exam may still name a combination code, as MIDRC's curators answer this one.
    assert fit(features("CT CHEST PELVIS W ABDOMEN WWO", "CT"),
               code_features("CT Abdomen WO and CT Chest and Abdomen and Pelvis W contrast IV")) is not None


def test_joined_exams_are_left_to_a_curator(matcher: Matcher) -> None:
    for modality, description in (
        ("CT", "CTA CHEST AND CT ABDOMEN AND PELVIS W CONT"),
        ("MR", "MR BRAIN/MR ANGIOGRAM WITH AND WITHOUT CONTRAST"),
    ):
        match = matcher.match(modality, description)
        assert not match.accepted, match


def test_a_contrast_ct_of_the_pulmonary_is_the_pulmonary_cta() -> None:
    # MIDRC's curators answer "CT PULMONARY W/CONTRAST" with "CTA Pulmonary arteries W contrast IV".
    parsed = features("CHEST PULMONARY WITH", "CT")
    assert parsed.angio and "PULMONARY" in parsed.qualifiers and "PE" not in parsed.purposes
    assert parsed.core() == features("CT PULMONARY W/CONTRAST", "CT").core()
    # Its veins, a nodule, or no contrast: no pulmonary angiogram.
    for description in ("CT PULM VEIN OP", "CT HEART W CONTRAST- LEFT ATRIUM AND PULMONARY VEINS",
                        "Vascular^3_PULMONARY_VEIN (Adult)"):
        assert "PULMONARY" not in features(description, "CT").qualifiers, description
    assert not features("PET LUNG CANCER OR PULMONARY NODULE (W/LOW DOSE CT)", "CT, PT").angio


def test_pulmonary_cta_is_the_pe_study_only_when_it_says_so(matcher: Matcher) -> None:
    # MIDRC's curators answer pulmonary CTAs that do not say PE three ways ("CT ANGIO PULMONARY"
    # the plain code, "CT CHEST PULMONARY ANGIO WITH IV CON" the embolus code): a suggestion.
    match = matcher.match("CT", "CHEST PULMONARY WITH")
    assert match.code == "36147-7" and not match.accepted, match
    said = matcher.match("CT", "CT CHEST W CONT PULMONARY ARTERIES FOR PE")
    assert (said.code, said.accepted) == ("79077-4", True), said
    assert "PE" in features("CT ANGIO CHEST PULM EMBOLISM", "CT").purposes


@pytest.mark.parametrize(("description", "side"), [
    ("XR ANKLE RT OBLIQUE", "RIGHT"),  # a limb's oblique keeps its side
    ("XR HAND LEFT OBL", "LEFT"),
    ("XR CHEST RT OBLIQUE", None),  # a chest's oblique names the side the view is taken from
    ("XR ABDOMEN LEFT OBLIQUE", None),
])
def test_a_side_before_oblique_is_dropped_only_for_the_chest_and_abdomen(description: str, side: str | None) -> None:
    assert features(description, "CR").laterality == side
