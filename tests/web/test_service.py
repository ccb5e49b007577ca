"""Pure review logic: candidates, replaying edits, lesion shares, key slices, interpretation."""

from __future__ import annotations

import numpy as np
import pytest

from cacscore.errors import InvalidInputError
from cacscore.io import CTVolume
from cacscore.labels import LAD, LCX, LM, RCA
from cacscore.scoring import score_volume
from cacscore.web.service import (
    EditRecord,
    active_edits,
    artery_code,
    candidate_confidence,
    candidate_table,
    classify_edit,
    find_candidates,
    interpretation,
    key_slices,
    lesion_label,
    lesion_table,
    replay,
    rescore,
    set_lesion,
    window,
)

from .conftest import automatic_mask, synthetic_volume

BAR, BLOB_A, BLOB_B, BLOB_C = 1, 2, 3, 4


def test_candidates_are_the_26_connected_scorable_components() -> None:
    candidates = find_candidates(synthetic_volume())
    assert candidates.n == 4
    assert [int((candidates.labels == i).sum()) for i in range(1, 5)] == [6 * 4 * 8, 2 * 16, 3 * 9, 4]
    box, inside = candidates.voxels(BLOB_B)
    assert (box[0].start, box[0].stop) == (2, 5) and inside.sum() == 27


def test_a_component_below_one_square_mm_is_no_candidate() -> None:
    hu = np.zeros((1, 8, 8), np.int16)
    hu[0, 1:3, 1:3] = 300  # 4 px x 0.2 mm^2 = 0.8 mm^2
    assert find_candidates(CTVolume(hu, (3.0, 0.45, 0.45))).n == 0


@pytest.mark.parametrize("lesion", [0, 5, -1, True])
def test_unknown_candidate_ids_raise(lesion: int) -> None:
    with pytest.raises(InvalidInputError, match="is not a candidate of this study"):
        find_candidates(synthetic_volume()).check(lesion)


def test_undo_cancels_the_edit_it_names_and_replay_follows() -> None:
    candidates = find_candidates(synthetic_volume())
    edits = [
        EditRecord(1, "remove", BLOB_A, 0),
        EditRecord(2, "add", BLOB_C, LCX),
        EditRecord(3, "reassign", BLOB_B, LM),
        EditRecord(4, "undo", BLOB_B, LAD, undoes=3),
    ]
    assert [e.id for e in active_edits(edits)] == [1, 2]
    mask = replay(automatic_mask(), candidates, edits)
    expected = automatic_mask()
    expected[candidates.labels == BLOB_A] = 0
    expected[candidates.labels == BLOB_C] = LCX
    assert np.array_equal(mask, expected)
    assert lesion_label(mask, candidates, BLOB_B) == RCA and lesion_label(mask, candidates, BLOB_A) == 0


def test_lesion_label_is_the_majority_code() -> None:
    candidates = find_candidates(synthetic_volume())
    mask = np.zeros_like(automatic_mask())
    set_lesion(mask, candidates, BLOB_B, RCA)
    mask[3, 30, 12] = LAD  # 1 of 27 voxels
    assert lesion_label(mask, candidates, BLOB_B) == RCA
    with pytest.raises(InvalidInputError, match="label code 9"):
        set_lesion(mask, candidates, BLOB_B, 9)


@pytest.mark.parametrize(
    ("before", "after", "action"),
    [(0, LAD, "add"), (LAD, 0, "remove"), (LAD, RCA, "reassign"), (1, LM, "reassign")],
)
def test_classify_edit(before: int, after: int, action: str) -> None:
    assert classify_edit(before, after) == action


def test_artery_codes() -> None:
    assert [artery_code(a) for a in (None, "none", "LM", "LAD", "LCX", "RCA", "unspecified")] == [
        0,
        0,
        2,
        3,
        4,
        5,
        1,
    ]
    with pytest.raises(
        InvalidInputError, match="artery 'RCx' is not one of unspecified, LM, LAD, LCX, RCA or none"
    ):
        artery_code("RCx")


def test_lesion_shares_are_each_candidates_own_score() -> None:
    volume = synthetic_volume()
    candidates = find_candidates(volume)
    mask = automatic_mask()
    set_lesion(mask, candidates, BLOB_C, LCX)
    result, lesion_map = rescore(volume, mask)
    rows = lesion_table(candidates, mask, automatic_mask(), result, lesion_map, {BLOB_A: 0.5})
    assert [row["id"] for row in rows] == [BLOB_A, BLOB_B, BLOB_C]
    for row in rows:
        alone = np.where(candidates.labels == row["id"], mask, 0)
        assert row["agatston"] == pytest.approx(score_volume(volume, alone).agatston)
    assert sum(row["agatston"] for row in rows) == pytest.approx(result.agatston)
    blob_c = rows[2]
    assert (blob_c["artery"], blob_c["auto_artery"], blob_c["confidence"]) == ("LCX", None, None)
    assert (blob_c["key_slice"], blob_c["center_yx"], blob_c["slices"]) == (3, [20.5, 30.5], [3, 3])
    # 1 mm^2 x weight 1 (180 HU) x 3 mm / 3
    assert blob_c["agatston"] == pytest.approx(1.0)


def test_candidate_table_lists_what_each_would_add() -> None:
    rows = candidate_table(synthetic_volume(), find_candidates(synthetic_volume()))
    # The bar (6 x 4 x 8 px x 0.75 mm^3 = 144 mm^3) is listed: under the bone-size limit.
    assert [row["id"] for row in rows] == [BAR, BLOB_A, BLOB_B, BLOB_C]
    assert [row["agatston"] for row in rows] == pytest.approx([192.0, 32.0, 13.5, 1.0])
    assert rows[1]["peak_hu"] == 450.0 and rows[1]["volume_mm3"] == pytest.approx(24.0)


def test_candidate_confidence_is_the_maximum_over_labelled_voxels() -> None:
    candidates = find_candidates(synthetic_volume())
    auto = automatic_mask()
    confidence = np.zeros(auto.shape, np.float32)
    confidence[1, 10, 10] = 0.25
    confidence[2, 11, 11] = 0.75
    assert candidate_confidence(candidates, auto, confidence) == {BLOB_A: 0.75, BLOB_B: 0.0}
    assert candidate_confidence(candidates, auto, None) == {}


def test_key_slices_show_each_artery_first() -> None:
    rows = [
        {"artery": "LAD", "agatston": 50.0, "key_slice": 10},
        {"artery": "LAD", "agatston": 40.0, "key_slice": 12},
        {"artery": "RCA", "agatston": 5.0, "key_slice": 20},
        {"artery": None, "agatston": 0.0, "key_slice": 30},
    ]
    assert key_slices(rows, 2) == [10, 20]
    assert key_slices(rows, 3) == [10, 12, 20]
    assert key_slices([], 3) == []


def test_window_maps_hu_to_grey() -> None:
    assert window(np.array([-1000, 40, 240, 440, 3000]), 400.0, 240.0).tolist() == [0, 0, 127, 255, 255]


def test_interpretation_texts() -> None:
    volume = synthetic_volume()
    texts = interpretation(score_volume(volume, automatic_mask()))
    assert texts["risk_category"].startswith("Agatston 11-100: mild atherosclerotic plaque")
    assert texts["cac_drs"] == (
        "CAC-DRS A1 (Agatston 1-99): mildly increased risk. N2: calcium in 2 of 4 coronary arteries."
    )
    assert interpretation(score_volume(volume, np.zeros_like(automatic_mask())))["cac_drs"].startswith(
        "CAC-DRS A0"
    )


def test_plausibility_rules_mark_what_they_say() -> None:
    from cacscore.io import CTVolume
    from cacscore.web.service import plausibility_warnings

    # 1 mm voxels: a 4 x 4 x 4 plaque at the centre (64 mm^3), a 2 x 2 x 50 mm "rib" (200 mm^3, 50 mm long)
    # 30 mm away, and a 9 x 9 x 9 block (729 mm^3) 85 mm from the plaque.
    hu = np.zeros((60, 120, 120), np.int16)
    hu[10:14, 10:14, 10:14] = 400  # plaque, counted automatically; centre (11.5, 11.5, 11.5)
    hu[10:12, 40:42, 20:70] = 700  # rib
    hu[40:49, 80:89, 60:69] = 300  # block; centre (44, 84, 64): sqrt(32.5^2 + 72.5^2 + 52.5^2) = 95 mm away
    volume = CTVolume(hu, (1.0, 1.0, 1.0), slice_thickness_mm=3.0)
    candidates = find_candidates(volume)
    auto = (candidates.labels == candidates.labels[11, 11, 11]).astype(np.uint8) * 3
    plaque, rib, block = (int(candidates.labels[p]) for p in ((11, 11, 11), (10, 40, 30), (44, 84, 64)))
    reasons = plausibility_warnings(volume, candidates, auto)
    assert plaque not in reasons
    assert reasons[rib] == ["50 mm long, more than 40 mm (rib, sternum, spine?)"]
    assert reasons[block][0] == "volume 729 mm³ is above 500 mm³ (bone or valve?)"
    assert reasons[block][1].startswith("95 mm from the nearest automatically counted lesion")
    # The anatomy's heart region and bone mask, as box lookups.
    outside = plausibility_warnings(
        volume,
        candidates,
        auto,
        heart=lambda box: np.zeros(tuple(s.stop - s.start for s in box), bool),
        bone=lambda box: np.ones(tuple(s.stop - s.start for s in box), bool),
    )
    assert outside[plaque] == [
        "outside the heart region (anatomy: mediastinum between the lungs)",
        "in bone (anatomy: rib, sternum or vertebra)",
    ]


def test_candidate_table_lists_implausible_ones_last() -> None:
    volume = synthetic_volume()
    candidates = find_candidates(volume)
    rows = candidate_table(volume, candidates, {1: ["too long"]})
    assert rows[-1]["id"] == 1 and rows[-1]["warnings"] == ["too long"]
    assert all(row["warnings"] == [] for row in rows[:-1])


def test_orientation_letters_follow_the_direction_matrix() -> None:
    from cacscore.web.service import orientation_labels

    assert orientation_labels(np.eye(3)) == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    # Columns running to the patient's right and rows running anterior (a flipped, upside-down image).
    flipped = np.diag([-1.0, -1.0, 1.0])
    assert orientation_labels(flipped) == {"left": "L", "right": "R", "top": "P", "bottom": "A"}
    # A coronal image: rows run from head to feet.
    coronal = np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]])
    assert orientation_labels(coronal) == {"left": "R", "right": "L", "top": "S", "bottom": "I"}
