"""Description normalisation and the method/region/views/contrast rules."""

from __future__ import annotations

import pytest

from radcommons.harmonize.normalize import canonical_tokens, contrast_of, midrc_key, modality_groups
from radcommons.harmonize.rules import code_features, contradicts, features


def test_midrc_key_normalises_case_space_and_aliases_modalities() -> None:
    assert midrc_key("DX", "  xr chest   1 view ") == (frozenset({"CR/DX"}), "XR CHEST 1 VIEW")
    assert modality_groups("CR, DX") == modality_groups("CR") == frozenset({"CR/DX"})
    assert modality_groups("PT, CTPT") == modality_groups("CT") == frozenset({"CT/PT"})
    assert modality_groups("[blank]") == frozenset()


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("XR PORT CHEST 1V", "Portable chest x-ray, single view"),
        ("CXR 2 VW", "XR CHEST TWO VIEWS"),
        ("CT CHEST W/O CONTRAST", "Thorax^CHEST_WITHOUT (Adult)"),
        ("CT CHEST WO CON", "CHEST CT NON-CONTRAST"),
        ("CT ABD/PELVIS W IV CON", "CT ABDOMEN AND PELVIS WITH CONTRAST"),
        ("CT CAP WWO", "CT CHEST ABDOMEN PELVIS W/O & W/ CONTRAST"),
        ("XR RT KNEE 3+ VIEWS", "X-RAY KNEE MINIMUM 3 VIEWS - RIGHT"),
    ],
)
def test_spellings_meet_in_canonical_tokens(first: str, second: str) -> None:
    ignore = {"CT", "XR"}  # a description may leave the method to the modality
    assert set(canonical_tokens(first)) - ignore == set(canonical_tokens(second)) - ignore


@pytest.mark.parametrize(
    ("text", "contrast"),
    [
        ("CT CHEST W", "W"),
        ("CT CHEST WITH IV CONTRAST", "W"),
        ("THORAX + CONT", "W"),
        ("CT HEAD W/O CM", "WO"),
        ("CT CHEST W O CONTRAST", "WO"),
        ("CT ANGIO CHEST WWO", "WWO"),
        ("MRI ABDOMEN + PELVIS WO/W CONTRAST", "WWO"),
        ("CT Chest WO and W contrast IV", "WWO"),
        ("XR ABDOMEN (W/UPRIGHT)", None),  # "W" joins words here, it is no contrast
        ("CT ABD PELVIS(WITH CHEST IMAGES) W IV CON", "W"),
    ],
)
def test_contrast_rule(text: str, contrast: str | None) -> None:
    assert contrast_of(text) == contrast


def test_region_rules() -> None:
    assert features("CT CAP W", "CT").regions == {"CHEST", "ABDOMEN", "PELVIS"}
    # "AP" is abdomen+pelvis on CT, a projection on radiographs.
    assert features("Abdomen^CT_AP_WITH (Adult)", "CT").regions == {"ABDOMEN", "PELVIS"}
    assert features("XR CHEST AP", "DX").projections == {"AP"}
    assert features("THORAX LUNG", "CT").regions == {"CHEST"}
    assert features("CT CORONARY CALCIUM SCORE", "CT").regions == {"HEART"}


def test_method_rules() -> None:
    assert features("CHEST 1 VIEW", "CR").method == "XR"
    assert features("PET LYMPHOMA", "CT, PT").method == "PET"
    assert features("CTA PE CHEST W", "CT").angio
    # The pulmonary arteries' CTA; the PE study only where the text says so (see test_pulmonary).
    parsed = features("CT ANGIO PULMONARY", "CT")
    assert "PULMONARY" in parsed.qualifiers and "PE" not in parsed.purposes


def test_views_portable_and_laterality_rules() -> None:
    parsed = features("XR PORT CHEST 1V", "CR")
    assert (parsed.views, parsed.portable) == ("VIEWS1", True)
    assert features("XR LEFT HAND 1-2 VIEWS", "DX").views == "VIEWS1OR2"
    assert features("XR LT HAND 1-2 VIEWS", "DX").laterality == "LEFT"
    assert code_features("XR Wrist - right GE 3 Views").views == "VIEWS3PLUS"


def test_code_names_parse_like_descriptions() -> None:
    assert code_features("Portable XR Chest AP single view") == features("XR PORT CHEST AP 1V", "DX")
    assert code_features("CT Chest WO contrast") == features("CT CHEST W/O CONTRAST", "CT")


def test_contradictions_rule_codes_out() -> None:
    right = features("XR RIGHT WRIST 3+ VIEWS", "DX")
    assert contradicts(right, code_features("XR Wrist - left GE 3 Views")) == "laterality"
    assert contradicts(features("CT CHEST W", "CT"), code_features("CT Chest WO contrast")) == "contrast"
    assert contradicts(features("CT CHEST", "CT"), code_features("CT Chest WO contrast")) == ""


def test_long_tail_spellings_found_in_midrcs_real_pairs() -> None:
    # Each from StudyDescriptions_Gen3.tsv; each once read wrongly or not at all.
    from radcommons.harmonize.normalize import canonical_tokens as tokens
    from radcommons.harmonize.rules import features as read

    assert "VIEWS4PLUS" in tokens("X-RAY KNEE COMPLETE 4 OR MORE VIEWS - LEFT")
    assert read("XR SHOULDER RT 2 OR MORE VIEWS", "DX").views == "VIEWS2PLUS"
    # Once read as the head alone, and answered "CT Head WO contrast" at 0.95.
    assert "FACE" in read("Head^CT_MAXILLOFACIAL_WO (Adult)", "CT").regions
    assert read("Vascular^CTA_HEADNECK_GR (Adult)", "CT").regions == frozenset({"HEAD", "NECK"})
    assert read("XR KNEES BILATERAL", "DX").regions == frozenset({"KNEE"})
