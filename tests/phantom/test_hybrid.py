"""Real-anatomy hybrids (cacscore.phantom.hybrid).

They are built on a hand-made chest CT, and on real CT when it downloads.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from cacscore.errors import CacScoreWarning, InvalidInputError
from cacscore.io import read_mask, read_volume, write_volume
from cacscore.io.volume import CTVolume
from cacscore.phantom.hybrid import (
    FAMILY,
    ImagingEstimate,
    compose,
    generate_hybrid,
    generate_hybrid_cohort,
    insert_lesion,
    load_background,
    render_fine,
)
from cacscore.phantom.hybrid_anatomy import locate_heart
from cacscore.scoring import score_calcium

SPACING = (3.0, 1.5, 1.5)


def _ellipse(
    shape: tuple[int, int, int], centre_mm: tuple[float, float, float], radii_mm: tuple[float, float, float]
) -> np.ndarray:
    axes = [(np.arange(n) - (n - 1) / 2) * s - c for n, s, c in zip(shape, SPACING, centre_mm, strict=True)]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    return np.asarray((z / radii_mm[0]) ** 2 + (y / radii_mm[1]) ** 2 + (x / radii_mm[2]) ** 2 <= 1.0)


def synthetic_chest() -> tuple[CTVolume, dict[str, np.ndarray]]:
    """Body, two lungs, a heart between them, spine and sternum; 8 HU noise.

    The heart is soft tissue in a 3-6 mm fat shell.

    Rows run anterior (top) to posterior as in a CT; the heart sits left of the midline (image right).
    """
    shape = (18, 150, 150)
    hu = np.full(shape, -1000.0, np.float32)
    parts = {
        "body": _ellipse(shape, (0, 0, 0), (1e4, 82, 105)),
        "lungs": _ellipse(shape, (0, 0, -50), (1e4, 52, 38)) | _ellipse(shape, (0, 0, 50), (1e4, 52, 38)),
        "fat": _ellipse(shape, (0, -8, 8), (23, 36, 36)),
        "heart": _ellipse(shape, (0, -8, 8), (20, 30, 30)),
        "bone": _ellipse(shape, (0, 64, 0), (1e4, 11, 11)) | _ellipse(shape, (0, -75, 0), (1e4, 4, 11)),
    }
    hu[parts["body"]] = 40.0
    hu[parts["lungs"]] = -850.0
    hu[parts["fat"]] = -100.0
    hu[parts["heart"]] = 40.0
    hu[parts["bone"]] = 500.0
    parts["fat"] &= ~parts["heart"]
    rng = np.random.default_rng(0)
    noise = ndi.gaussian_filter(rng.standard_normal(shape), sigma=(0, 0.6, 0.6))
    hu += 8.0 * noise / noise.std()
    return CTVolume(np.rint(hu).astype(np.int16), SPACING, kvp=120.0, slice_thickness_mm=3.0), parts


@pytest.fixture(scope="module")
def chest(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CTVolume, dict[str, np.ndarray]]:
    volume, parts = synthetic_chest()
    path = tmp_path_factory.mktemp("chest") / "chest.nii.gz"
    write_volume(volume, path)
    return path, read_volume(path), parts


@pytest.fixture(scope="module")
def background(chest: tuple[Path, CTVolume, dict[str, np.ndarray]]):  # type: ignore[no-untyped-def]
    path, volume, _ = chest
    return load_background(path, volume=volume)


def test_render_hand_checked() -> None:
    # 2 x 2 pixels (0.5 mm) fully filled through slice 1 (2 mm thick, centred at 2 mm), 400 HU, no blur:
    # those 4 voxels are 400 HU; filled through half of slice 2's thickness only: 150 HU there.
    s = 2
    fine_z = np.arange(0.125, 6.0, 0.25) - 1.0  # slice k covers [2k - 1, 2k + 1] mm
    occ = np.zeros((fine_z.size, 8 * s, 8 * s))
    occ[(fine_z > 1.0) & (fine_z < 3.0), 3 * s : 5 * s, 3 * s : 5 * s] = 1.0
    occ[(fine_z > 3.0) & (fine_z < 4.0), 3 * s : 5 * s, 3 * s : 5 * s] = 1.0
    dens = np.full(occ.shape, 400.0)
    frac, sig = render_fine(
        occ, dens, fine_z, n_slices=3, dz_mm=2.0, thickness_mm=2.0, subsample=s, blur_sigma_px=0.0
    )
    np.testing.assert_allclose(frac[1, 3:5, 3:5], 1.0)
    np.testing.assert_allclose(frac[2, 3:5, 3:5], 0.5)
    assert frac[0].sum() == 0 and frac[1].sum() == pytest.approx(4.0)
    bg = np.full((3, 8, 8), -100, np.int16)
    values, support = compose(bg, frac, sig, 0.0, 0.0, np.random.default_rng(0))
    assert values[1, 3:5, 3:5].tolist() == [[400, 400], [400, 400]]
    assert values[2, 3:5, 3:5].tolist() == [[150, 150], [150, 150]]  # 0.5 x -100 + 0.5 x 400
    outside = support == 0
    assert np.array_equal(values[outside], bg[outside])
    # Reference: >= 130 HU in the support; slice 1: 4 px x 0.25 mm^2 = 1 mm^2, weight 4 (400 HU);
    # slice 2: 1 mm^2, weight 1 (150 HU); Agatston = (1 x 4 + 1 x 1) x 2 / 3.
    mask = ((values >= 130) & (support > 0)).astype(np.uint8) * 3
    result = score_calcium(values, (2.0, 0.5, 0.5), mask=mask, kvp=120.0)
    assert result.agatston == pytest.approx(10.0 / 3.0)
    assert result.arteries["LAD"].agatston == pytest.approx(10.0 / 3.0)


def test_locate_heart_on_synthetic_chest(chest: tuple[Path, CTVolume, dict[str, np.ndarray]]) -> None:
    _, volume, parts = chest
    region = locate_heart(volume.hu, volume.spacing)
    found, true = region.heart, parts["heart"]
    assert (found & true).sum() / true.sum() > 0.8
    assert (found & ~ndi.binary_dilation(true, iterations=3)).sum() / found.sum() < 0.05
    assert not (found & parts["lungs"] & ~parts["fat"] & ~parts["heart"]).any()
    assert region.bone[parts["bone"] & ~ndi.binary_dilation(parts["heart"], iterations=3)].mean() > 0.9


def test_imaging_estimates(background) -> None:  # type: ignore[no-untyped-def]
    im = background.imaging
    assert im.slice_thickness_mm == 3.0
    assert 6.0 < im.noise_sd_hu < 10.0  # 8 HU made
    assert im.blur_sigma_mm < 1.5


def test_deterministic_by_seed(background) -> None:  # type: ignore[no-untyped-def]
    a = generate_hybrid(background, 7, target_category="C")
    b = generate_hybrid(background, 7, target_category="C")
    c = generate_hybrid(background, 8, target_category="C")
    assert np.array_equal(a.volume.hu, b.volume.hu) and np.array_equal(a.label, b.label)
    assert a.truth == b.truth
    assert not np.array_equal(a.volume.hu, c.volume.hu)


@pytest.mark.parametrize("category", ["B", "D"])
def test_lesions_in_fat_not_bone_and_background_unchanged(
    background,
    chest: tuple[Path, CTVolume, dict[str, np.ndarray]],
    category: str,  # type: ignore[no-untyped-def]
) -> None:
    _, volume, parts = chest
    case = generate_hybrid(background, 11, target_category=category)
    assert case.reference.risk_category == category and case.truth["target_met"]
    assert case.truth["family"] == FAMILY
    labelled = case.label > 0
    assert labelled.any()
    # Every reference voxel lies in the heart's fat shell (grown by 2 voxels for the blur), none on bone.
    shell = ndi.binary_dilation(parts["fat"], iterations=2)
    assert shell[labelled].all()
    assert not (labelled & ndi.binary_dilation(parts["bone"], iterations=3)).any()
    for lesion in case.truth["lesions"]:
        centre = tuple(int(round(c / s)) for c, s in zip(lesion["centre_grid_mm"], SPACING, strict=True))
        assert ndi.binary_dilation(parts["fat"], iterations=1)[centre]
    # Outside the inserted lesions' reach the image is the background, voxel for voxel.
    changed = case.volume.hu != volume.hu
    near = np.zeros(volume.shape, bool)
    for lesion in case.truth["lesions"]:
        reach = max(lesion["semi_axes_mm"]) + 4 * background.imaging.blur_sigma_mm + 2 * SPACING[1]
        centre_mm = np.asarray(lesion["centre_grid_mm"])
        grid = np.stack(
            np.meshgrid(
                *[np.arange(n) * s for n, s in zip(volume.shape, SPACING, strict=True)], indexing="ij"
            ),
            axis=-1,
        )
        near |= (np.abs(grid - centre_mm) <= reach + np.array([SPACING[0], 0, 0])).all(axis=-1)
    assert changed.any()
    assert not (changed & ~near).any()


def test_cohort_reference_is_score_of_written_image(
    chest: tuple[Path, CTVolume, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    from cacscore.datasets import list_cases

    path, _, _ = chest
    out = tmp_path / "hybrids"
    rows = generate_hybrid_cohort(out, [(path, None)], 2, 5, fmt="nifti", balance=True)
    assert [r["risk_category"] for r in rows] == ["A", "B"]
    assert all(r["family"] == FAMILY and r["background"] == str(path) for r in rows)
    assert json.loads((out / "generation.json").read_text())["family"] == FAMILY
    for ref in list_cases(out):
        folder = Path(ref.image_path).parent
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CacScoreWarning)
            volume = read_volume(folder / "image.nii.gz")
        label = read_mask(folder / "label.nii.gz", volume)
        reference = json.loads((folder / "reference.json").read_text())
        truth = json.loads((folder / "truth.json").read_text())
        assert truth["background"]["path"] == str(path) and truth["family"] == FAMILY
        result = score_calcium(volume.hu, volume.spacing, mask=label, kvp=120.0)
        assert result.agatston == pytest.approx(reference["agatston"], abs=1e-6)
        assert result.risk_category == reference["risk_category"]
        # The reference is exactly the >= 130 HU voxels the lesions left.
        assert (volume.hu[label > 0] >= 130).all()
    # Resuming with other settings is refused rather than mixing cohorts.
    with pytest.raises(InvalidInputError, match="seed"):
        generate_hybrid_cohort(out, [(path, None)], 2, 6)


def test_category_below_the_patients_own_is_refused(background) -> None:  # type: ignore[no-untyped-def]
    own = background.calcium.copy()
    background.calcium[:] = 0
    background._cache.clear()  # the patient's own score is cached
    try:
        k, y, x = np.argwhere(background.region.fat)[0]
        background.calcium[k, y, x] = 3
        hu = background.volume.hu
        saved = int(hu[k, y, x])
        hu[k, y, x] = 500
        with pytest.raises(InvalidInputError, match="cannot be category A"):
            generate_hybrid(background, 1, target_category="A")
    finally:
        hu[k, y, x] = saved
        background.calcium[:] = own
        background._cache.clear()


def test_insert_lesion_outside_volume_refused(background) -> None:  # type: ignore[no-untyped-def]
    from cacscore.phantom.hybrid import Lesion

    lesion = Lesion(
        3, (-500.0, -500.0, -500.0), ((1.0, 0, 0), (0, 1.0, 0), (0, 0, 1.0)), (2.0, 1.0, 1.0), 800.0
    )
    with pytest.raises(InvalidInputError, match="outside the volume"):
        insert_lesion(
            background.volume.hu, SPACING, lesion, ImagingEstimate(8.0, 0.5, 3.0), np.random.default_rng(0)
        )


# ----------------------------------------------------------------------------- real CT (downloaded)

PYRADIOMICS_SIMPLE = "https://pypi.org/simple/pyradiomics/"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "hybrid"


@pytest.fixture(scope="session")
def real_chest_ct(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """lung1/lung2_image.nrrd from the pyradiomics 3.1.0 sdist (skips when it cannot be downloaded)."""
    import re
    import tarfile
    import urllib.parse
    import urllib.request

    cache = Path.home() / ".cache" / "cacscore-tests" / "pyradiomics-3.1.0"
    wanted = {name: cache / f"{name}_image.nrrd" for name in ("lung1", "lung2")}
    if all(p.exists() for p in wanted.values()):
        return wanted
    try:
        page = urllib.request.urlopen(PYRADIOMICS_SIMPLE, timeout=30).read().decode()
        match = re.search(r'href="([^"]*pyradiomics-3\.1\.0\.tar\.gz[^"]*)"', page)
        if match is None:
            pytest.skip("pyradiomics-3.1.0.tar.gz not listed on the package index's simple page")
        url = urllib.parse.urljoin(PYRADIOMICS_SIMPLE, match.group(1).replace("&amp;", "&"))
        archive = tmp_path_factory.mktemp("dl") / "pyradiomics-3.1.0.tar.gz"
        urllib.request.urlretrieve(url, archive)
        cache.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            for name, target in wanted.items():
                member = next(m for m in tar.getmembers() if m.name.endswith(f"data/{name}_image.nrrd"))
                source = tar.extractfile(member)
                assert source is not None
                target.write_bytes(source.read())
    except (OSError, StopIteration) as exc:
        pytest.skip(f"real chest CT not available: download of the pyradiomics 3.1.0 sdist failed ({exc})")
    return wanted


@pytest.mark.slow
def test_real_backgrounds(real_chest_ct: dict[str, Path]) -> None:
    """On lung1 and lung2: inserted lesions in the heart region and its fat, never on bone."""
    for name in ("lung1", "lung2"):
        bg = load_background(real_chest_ct[name], DOCS / f"{name}_points.csv")
        # Centred in epicardial fat; a long lesion's blurred ends may reach a few mm beyond the fat mask.
        near = bg.region.heart_neighbourhood(bg.volume.spacing, 5.0)
        case = generate_hybrid(bg, 3, target_category="E")
        assert case.reference.risk_category == "E"
        inserted = (case.label > 0) & (bg.calcium == 0)
        assert inserted.any()
        assert near[inserted].all()
        assert not (inserted & bg.region.bone).any()
        fat = ndi.binary_dilation(bg.region.fat, iterations=1)
        for lesion in case.truth["lesions"]:
            centre = tuple(
                int(round(c / s)) for c, s in zip(lesion["centre_grid_mm"], bg.volume.spacing, strict=True)
            )
            assert fat[centre]
        assert case.truth["background_calcium"]["risk_category"] == ("A" if name == "lung1" else "E")


def test_cli_writes_a_cohort_and_refuses_unpaired_points(
    chest: tuple[Path, CTVolume, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from cacscore.cli.main import app

    path, _, _ = chest
    bad = CliRunner().invoke(
        app,
        [
            "hybrid",
            "--background",
            str(path),
            "--points",
            "a.csv",
            "--points",
            "b.csv",
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert bad.exit_code == 1
    assert "--points given 2 times for 1 --background" in bad.output
    assert not (tmp_path / "x").exists()
    ok = CliRunner().invoke(
        app, ["hybrid", "--background", str(path), "--n", "1", "--seed", "3", "--out", str(tmp_path / "h")]
    )
    assert ok.exit_code == 0, ok.output
    assert "1 hybrid cases" in ok.output
    assert (tmp_path / "h" / "case_0000" / "reference.json").is_file()
