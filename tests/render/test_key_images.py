"""Key images: a crop per lesion, an overview per artery with calcium, print resolution, one colour table."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cacscore.errors import InvalidInputError
from cacscore.io import CTVolume
from cacscore.labels import ARTERY_COLOURS, LAD, RCA
from cacscore.render import KEY_IMAGE_DPI, orientation_labels, write_key_images
from cacscore.render.key_images import CROP_MM, key_images_figure, key_slice
from cacscore.scoring import score_volume


def _case() -> tuple[CTVolume, np.ndarray]:
    """6 slices of 100 x 100 at 3 x 0.5 x 0.5 mm: LAD plaque on slices 1-2 (larger on 2), RCA plaque on 4."""
    hu = np.full((6, 100, 100), 40, dtype=np.int16)
    mask = np.zeros(hu.shape, dtype=np.uint8)
    hu[1, 10:12, 10:12] = hu[2, 9:14, 9:14] = 400
    mask[1, 10:12, 10:12] = mask[2, 9:14, 9:14] = LAD
    hu[4, 50:54, 40:44] = 300
    mask[4, 50:54, 40:44] = RCA
    return CTVolume(hu=hu, spacing=(3.0, 0.5, 0.5)), mask


def _texts(fig: object) -> list[str]:
    from matplotlib.text import Text

    return [t.get_text() for t in fig.findobj(Text)]  # type: ignore[attr-defined]


def test_one_crop_per_lesion_and_one_overview_per_artery(tmp_path: Path) -> None:
    volume, mask = _case()
    result = score_volume(volume, mask)
    assert len(result.lesions) == 2
    fig = key_images_figure(volume, mask, result.lesions)
    titles = [ax.get_title() for ax in fig.axes]
    assert sum(title.startswith("#") for title in titles) == 2  # two crops, numbered by lesion id
    assert (
        sum("Agatston" in title and "slice" in title and not title.startswith("#") for title in titles) == 2
    )
    for lesion in result.lesions:
        assert any(
            title.startswith(f"#{lesion.id} {lesion.artery}\nAgatston {lesion.agatston:.1f}")
            for title in titles
        )
    texts = _texts(fig)
    assert "10 mm" in texts and "20 mm" in texts  # scale bars of the crops and the overviews
    assert {"L", "R", "A", "P"} <= set(texts)
    assert not any("distractor" in text for text in texts)
    # The crop spans CROP_MM in both directions (axes in mm).
    crop = next(ax for ax in fig.axes if ax.get_title().startswith("#"))
    assert crop.get_xlim() == pytest.approx((0.0, CROP_MM))
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_png_is_print_resolution_and_written_whole(tmp_path: Path) -> None:
    volume, mask = _case()
    path = write_key_images(
        tmp_path / "key" / "montage.png", volume, mask, score_volume(volume, mask).lesions
    )
    image = Image.open(io.BytesIO(path.read_bytes()))
    assert image.info["dpi"][0] == pytest.approx(KEY_IMAGE_DPI, abs=0.5) and KEY_IMAGE_DPI >= 150
    assert image.size[0] == 8 * KEY_IMAGE_DPI
    assert [p.name for p in path.parent.iterdir()] == ["montage.png"]  # no temporary file left
    assert path.stat().st_mode & 0o044 == 0o044  # readable by others, like every other output


def test_model_and_reference_side_by_side() -> None:
    volume, mask = _case()
    reference = mask.copy()
    reference[4] = 0  # the reference has no RCA plaque: its RCA panel says so
    fig = key_images_figure(
        volume,
        mask,
        score_volume(volume, mask).lesions,
        reference_labels=reference,
        reference_lesions=score_volume(volume, reference).lesions,
    )
    titles = [ax.get_title() for ax in fig.axes]
    assert sum(t.startswith("model: ") for t in titles) == 2
    assert sum(t.startswith("reference: ") for t in titles) == 1
    assert "reference: \nno RCA calcium" in _texts(fig)
    assert "reference calcium" in _texts(fig)


def test_key_slice_is_where_the_lesion_is_largest() -> None:
    volume, mask = _case()
    lad = next(lesion for lesion in score_volume(volume, mask).lesions if lesion.artery == "LAD")
    assert lad.slices == (1, 2)
    assert key_slice(mask, lad, (0.5, 0.5)) == 2  # 25 voxels on slice 2, 4 on slice 1


def test_no_calcium_gives_a_note_not_empty_slices() -> None:
    volume, mask = _case()
    fig = key_images_figure(volume, np.zeros_like(mask), [])
    assert fig.axes == []
    assert any("No coronary calcium" in text for text in _texts(fig))


def test_mask_of_another_shape_is_refused() -> None:
    volume, mask = _case()
    with pytest.raises(InvalidInputError, match="does not match volume shape"):
        key_images_figure(volume, mask[:3], [])


@pytest.mark.parametrize(
    ("direction", "expected"),
    [
        (np.eye(3), {"left": "R", "right": "L", "top": "A", "bottom": "P"}),
        (np.diag([-1.0, -1.0, 1.0]), {"left": "L", "right": "R", "top": "P", "bottom": "A"}),
    ],
)
def test_orientation_letters_follow_the_direction_cosines(direction: np.ndarray, expected: dict) -> None:
    assert orientation_labels(direction) == expected


def test_outlines_use_the_label_colour_table() -> None:
    volume, mask = _case()
    fig = key_images_figure(volume, mask, score_volume(volume, mask).lesions)
    from matplotlib.colors import to_hex

    drawn = set()
    for ax in fig.axes:
        for collection in ax.collections:
            drawn |= {to_hex(c) for c in collection.get_edgecolor()}
    assert {ARTERY_COLOURS[LAD], ARTERY_COLOURS[RCA]} <= drawn
