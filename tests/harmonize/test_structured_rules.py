"""The structured match: a description's features against each code's own name, calibrated.

Descriptions are real pairs from MIDRC's StudyDescriptions_Gen3.tsv that no curated row names.
"""

from __future__ import annotations

import pytest

from radcommons.harmonize import Matcher, builtin_table
from radcommons.harmonize.confidence import Calibration
from radcommons.harmonize.rules import best_fit, code_features, features, fit
from radcommons.harmonize.tables import MappingRow, builtin_attributes, build_table


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return Matcher(builtin_table())


def kind(description: str, modality: str, name: str) -> str | None:
    found = fit(features(description, modality), code_features(name))
    return None if found is None else found.kind


def test_a_view_count_inside_a_codes_range_is_the_same() -> None:
    assert kind("HAND RIGHT 3 VIEWS MIN", "DX", "XR Hand - right GE 3 Views") == "same"
    assert kind("KNEE 2 VIEWS LEFT", "DX", "XR Knee - left 1 or 2 Views") == "same"
    # Listed projections are a count: three of them fit "GE 3", and are not left open by it.
    assert kind("XR FOOT RIGHT (ROUTINE: AP,LAT,OBL)", "CR", "XR Foot - right GE 3 Views") == "same"
    assert kind("XR CHEST 2 VIEWS", "DX", "XR Chest Single view") is None
    # Plural obliques are two views: AP, lateral and both obliques are four, not "2 or 3".
    assert kind("XR SPINE LUMBAR (AP+LAT+OBLIQUES)", "DX", "XR Lumbar spine 2 or 3 Views") is None
    # Supine and upright may repeat each projection: the count is unknown, the range a guess.
    assert kind("XR SPINE LUMBAR (AP+LAT, SUPINE+UPRIGHT)", "DX", "XR Lumbar spine 2 or 3 Views") == "guess"


def test_a_code_stating_less_is_broader_and_stating_more_a_guess() -> None:
    assert kind("CT PELVIS WITHOUT CONTRAST", "CT", "CT Pelvis") == "broader"
    assert kind("CT HEAD", "CT", "CT Head WO contrast") == "guess"
    assert kind("CT CHEST W/O", "CT", "CT Chest W contrast IV") is None


def test_the_more_specific_code_wins() -> None:
    catalogue = {c: code_features(i.long_common_name) for c, i in builtin_table().codes.items()}
    # "PA and Lateral" states the projections; "2 Views" only their count.
    tied, found = best_fit(features("CHEST-PA AND LATERAL VIEWS", "DX"), catalogue)
    assert tied == ("42272-5",) and found.kind == "same"
    # A qualifier in a code's name ("cine for function") is a guess for a description without it.
    tied, _ = best_fit(features("MR HEART WITH AND WITHOUT CONTRAST", "MR"), catalogue)
    assert tied == ("36357-2",)
    tied, _ = best_fit(features("TRANSTHORACIC ECHO", "US"), catalogue)
    assert tied == ("59281-6",)


def test_an_oblique_or_decubitus_side_is_no_laterality() -> None:
    parsed = features("XR CHEST LEFT DECUBITUS VIEW (RIGHT SIDE UP)", "DX")
    assert parsed.laterality is None and "DECUBITUS" in parsed.projections
    oblique = code_features("XR Chest PA and Lateral and Right oblique and Left oblique")
    assert oblique.laterality is None
    assert oblique == features("XR CHEST PA LATERAL W BOTH OBLIQUE PROJECTIONS", "CR")


@pytest.mark.parametrize(
    ("modality", "description", "code"),
    [
        ("CR", "XR FOOT RIGHT (ROUTINE: AP,LAT,OBL)", "48476-6"),
        ("DX", "KNEE 2 VIEWS LEFT", "47373-6"),
        ("CR", "SHOULDER RIGHT 2 VIEWS", "79369-5"),
        ("CT", "CT ABDOMEN W IV CONTRAST", "79103-8"),
        ("MR", "MR LUMBAR SPINE W AND WO IV CONTRAST NEURO", "24967-2"),
    ],
)
def test_real_long_tail_pairs_answered_by_the_code_name(matcher: Matcher, modality: str, description: str,
                                                         code: str) -> None:
    match = matcher.match(modality, description)
    assert (match.code, match.method, match.accepted) == (code, "rules", True), match.rule
    assert "curated rows of this kind" in match.rule


@pytest.mark.parametrize(
    ("modality", "description", "codes"),
    [
        # No side: the left and the right foot's codes fit alike.
        ("CR", "XR FOOT 3+ VIEWS", {"48477-4", "48476-6"}),
        # Two codes state chest, abdomen and pelvis with and without contrast.
        ("CT", "CTSTNECK CHEST ABDOMEN PELVIS W WO CONTRAST", {"72252-0", "87864-5"}),
    ],
)
def test_an_ambiguous_description_is_not_answered(matcher: Matcher, modality: str, description: str,
                                                  codes: set[str]) -> None:
    catalogue = {c: code_features(i.long_common_name) for c, i in builtin_table().codes.items()}
    tied, _ = best_fit(features(description, modality), catalogue)
    assert set(tied) == codes
    match = matcher.match(modality, description)
    assert match.code in codes and not match.accepted, match


def test_a_guess_is_never_answered_on_its_own(matcher: Matcher) -> None:
    # Knee MRIs are mostly without contrast, but the description does not say so.
    match = matcher.match("MR", "MRI KNEE LEFT")
    assert match.code == "36508-0" and "1 guessed" in match.rule and not match.accepted


def test_calibration_shrinks_a_small_class_towards_its_parent() -> None:
    calibration = Calibration()
    for right in [True] * 9 + [False]:
        calibration.add(("XR other", "same"), right)
    calibration.add(("XR other", "broader"), False)
    assert calibration.weight(()) == pytest.approx((9 + 4 * 0.5) / (11 + 4))
    parent = calibration.weight(("XR other",))
    assert calibration.weight(("XR other", "broader")) == pytest.approx((0 + 4 * parent) / (1 + 4))
    assert calibration.weight(("XR other", "same", "unseen")) == pytest.approx(calibration.weight(("XR other", "same")))
    assert calibration.describe(("XR other", "same")) == "9/10 curated rows of this kind"


def test_calibration_counts_only_the_matchers_own_rows() -> None:
    # One curated row: the matcher knows nothing of MIDRC's other 596 when it calibrates.
    table = build_table([MappingRow("CT", "CT CHEST W IV CONTRAST", "24628-0", "", line=2)], builtin_attributes())
    counts = Matcher(table)._calibration.counts
    assert counts[()] == [1, 1]


def test_long_tail_spellings_read_for_the_structured_match() -> None:
    # Each from StudyDescriptions_Gen3.tsv, each once answered with a wrong region or purpose.
    assert features("CT ANGIO CHST/ABD/PEL W/WO CONTRAST", "CT").regions == {"CHEST", "ABDOMEN", "PELVIS"}
    # A low-dose chest CT that follows a nodule up is no screening (MIDRC: "CT Chest WO contrast").
    assert "SCREENING" not in features("Thorax^LOW_DOSE_NODULE_FU_WO_CM (Adult)", "CT").purposes
    assert "SCREENING" in features("CT CHEST W/O- LOW DOSE (LUNG CANCER SCREENING)", "CT").purposes
    # Lumbosacral is LOINC's "Spine Lumbar and Sacrum", as MIDRC's curators answer it.
    assert features("LUMBAR SACRAL SPINE MIN 4 VIEWS", "CR").regions == code_features(
        "XR Spine Lumbar and Sacrum 2 or 3 Views").regions
    # CPT's "with pelvis when performed" is the hip's code.
    assert features("XR LEFT HIP 2-3 VIEWS (UNILATERAL) WITH PELVIS WHEN PERFORMED", "DX").regions == {"HIP"}


def test_curated_rows_with_the_same_features_break_a_tie(matcher: Matcher) -> None:
    # Two codes state chest, abdomen, supine and upright alike; MIDRC's curated rows with these
    # features name one, so it answers.
    description = "XR ACUTE ABDOMEN (SUPINE,UPRIGHT,AND 1 VIEW CHEST)"
    match = matcher.match("DX", description)
    assert (match.code, match.accepted) == ("83017-4", True) and "tied with 1 other" in match.rule
    # Without those rows nothing tells the two apart: a suggestion only.
    table = build_table([MappingRow("CT", "CT HEAD WO", "30799-1", "", line=2)], builtin_attributes())
    alone = Matcher(table).match("DX", description)
    assert "tied with 1 other" in alone.rule and not alone.accepted, alone


def test_the_curated_rows_majority_stays_when_the_code_name_fits_another_code(matcher: Matcher) -> None:
    # The curated rows with these features name the PE study; the code name that states them
    # best is "CTA Chest vessels". Their majority vote stays (it fell to similarity at 0.57).
    match = matcher.match("CT", "CHEST PE PROTOCOL ZZ")
    assert (match.code, match.accepted) == ("79077-4", True), match
    assert "same method/region/views/contrast as" in match.rule


def test_a_row_left_out_of_the_calibration_falls_back_to_blank_modality_rows() -> None:
    # The CT row is its modality's only row with these features: left out while it is counted,
    # the blank-modality row with the same features answers for it, as for a new description.
    table = build_table([
        MappingRow("CT", "CT CHEST W IV CONTRAST", "24628-0", "", line=2),
        MappingRow("", "CHEST CT WITH CONTRAST", "24628-0", "", line=3),
    ], builtin_attributes())
    counts = Matcher(table)._calibration.counts
    agree = [key for key in counts if key[-1:] == ("curated rows with these features agree",)]
    assert [counts[key] for key in agree] == [[1, 1]], counts
