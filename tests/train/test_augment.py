"""Training augmentation on hand-made patches: alignment of image and labels, ranges, seeds, label codes."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from cacscore.errors import InvalidInputError
from cacscore.preprocess import scaled_threshold
from cacscore.train.augment import Augmentation
from cacscore.train.data import IGNORE, CachedCase, PatchSampler, context_voxels

OFF = Augmentation.none()
LEVEL = scaled_threshold(130.0)


def _gen(seed: int = 0) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def _blocks(shape: tuple[int, int, int] = (16, 48, 32), batch: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Patches holding three labelled blocks (codes 1, 3, 255).

    The blocks are bright (0.8) on a dark (0.1) ground.
    """
    target = torch.zeros(batch, *shape, dtype=torch.uint8)
    target[:, 4:9, 8:14, 6:11] = 1
    target[:, 7:12, 30:37, 18:24] = 3
    target[:, 3:7, 20:25, 22:27] = IGNORE
    image = torch.where(target > 0, 0.8, 0.1)[:, None].float()
    return image, target


def _agreement(image: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """Fraction of labelled voxels that are bright, and of bright voxels that are labelled."""
    bright = image[:, 0] > 0.45
    labelled = target > 0
    return (
        float((bright & labelled).sum() / labelled.sum()),
        float((bright & labelled).sum() / bright.sum()),
    )


@pytest.mark.parametrize(
    "settings",
    [
        {"p_rotation": 1.0, "rotation_deg": 30.0, "tilt_deg": 0.0},
        {"p_rotation": 1.0, "rotation_deg": 0.0, "tilt_deg": 10.0},
        {"p_scale": 1.0, "scale_range": (0.8, 1.25)},
        {"p_elastic": 1.0, "elastic_voxels": 2.0, "elastic_spacing_voxels": 8.0},
    ],
)
def test_spatial_transforms_move_image_and_labels_together(settings: dict[str, object]) -> None:
    image, target = _blocks()
    out_image, out_target = replace(OFF, **settings)(image, target, _gen(1))
    assert not torch.equal(out_target, target)  # the transform did move something
    hit, precision = _agreement(out_image, out_target)
    # Bilinear image vs nearest labels differ only at block borders.
    assert hit > 0.85 and precision > 0.85
    for code in (1, 3, IGNORE):
        for k in range(image.shape[0]):
            where = torch.nonzero(out_target[k] == code).float()
            assert len(where) > 0
            bright = torch.nonzero((out_image[k, 0] > 0.45) & (out_target[k] == code)).float()
            assert torch.allclose(where.mean(0), bright.mean(0), atol=0.5)


def _point(shape: tuple[int, int, int], offset: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """One labelled voxel at ``offset`` (z, y, x) from the patch centre, as a 3x3x3 block."""
    centre = [n // 2 for n in shape]
    target = torch.zeros(1, *shape, dtype=torch.uint8)
    z, y, x = (c + o for c, o in zip(centre, offset))
    target[0, z - 1 : z + 2, y - 1 : y + 2, x - 1 : x + 2] = 2
    return torch.where(target > 0, 0.9, 0.0)[:, None].float(), target


def _position(target: torch.Tensor, shape: tuple[int, int, int]) -> np.ndarray:
    """Centroid of the labelled voxels relative to the patch's geometric centre, voxels (z, y, x)."""
    where = torch.nonzero(target[0] > 0).float().mean(0).numpy()
    return where - np.asarray([n // 2 for n in shape])  # the point was placed at n // 2


@pytest.mark.parametrize("seed", range(6))
def test_in_plane_rotation_keeps_the_distance_and_stays_within_its_angle(seed: int) -> None:
    shape = (16, 48, 32)  # non-cubic: the rotation must stay a rotation in voxel units
    image, target = _point(shape, (0, 0, 12))
    _, moved = replace(OFF, p_rotation=1.0, rotation_deg=40.0, tilt_deg=0.0)(image, target, _gen(seed))
    before = _position(target, shape)
    after = _position(moved, shape)
    assert after[0] == pytest.approx(before[0], abs=0.6)  # about z: z does not change
    assert np.hypot(after[1], after[2]) == pytest.approx(np.hypot(before[1], before[2]), abs=1.0)
    angle = math.degrees(math.atan2(after[1], after[2]) - math.atan2(before[1], before[2]))
    assert abs(angle) <= 40.0 + 4.0


@pytest.mark.parametrize("seed", range(6))
def test_tilt_keeps_the_distance_in_a_flat_patch(seed: int) -> None:
    shape = (24, 48, 48)
    image, target = _point(shape, (6, 0, 0))
    _, moved = replace(OFF, p_rotation=1.0, rotation_deg=0.0, tilt_deg=20.0)(image, target, _gen(seed))
    after = _position(moved, shape)
    before = _position(target, shape)
    assert np.linalg.norm(after) == pytest.approx(np.linalg.norm(before), abs=1.0)
    tilt = math.degrees(math.acos(min(1.0, abs(after[0]) / np.linalg.norm(after))))
    assert tilt <= 20.0 * math.sqrt(2) + 5.0  # two tilts of at most 20 degrees each


@pytest.mark.parametrize("seed", range(6))
def test_scaling_stays_within_its_range(seed: int) -> None:
    shape = (32, 32, 32)
    image, target = _point(shape, (0, 8, 8))
    _, moved = replace(OFF, p_scale=1.0, scale_range=(0.8, 1.25))(image, target, _gen(seed))
    ratio = np.linalg.norm(_position(moved, shape)) / np.linalg.norm(_position(target, shape))
    assert 0.8 - 0.1 <= ratio <= 1.25 + 0.1


def test_linear_intensity_change_stays_within_its_hu_ranges() -> None:
    hu = 40.0
    image = torch.full((64, 1, 2, 2, 2), (hu + 300) / 1100)
    target = torch.zeros(64, 2, 2, 2, dtype=torch.uint8)
    out, same = replace(OFF, p_intensity=1.0, hu_scale_range=(0.9, 1.1), hu_shift_range=(-20.0, 20.0))(
        image, target, _gen(2)
    )
    out_hu = out[:, 0, 0, 0, 0] * 1100 - 300
    assert float(out_hu.min()) >= 40 * 0.9 - 20 - 1e-3 and float(out_hu.max()) <= 40 * 1.1 + 20 + 1e-3
    assert float(out_hu.max() - out_hu.min()) > 20  # the range is used
    assert torch.equal(same, target)


def test_gamma_keeps_every_voxel_on_its_side_of_130_hu() -> None:
    values = torch.tensor([0.0, 0.1, 0.3, LEVEL - 1e-4, LEVEL, LEVEL + 1e-4, 0.6, 0.9, 1.0])
    image = values.view(1, 1, 1, 1, -1).repeat(16, 1, 1, 1, 1)
    target = torch.zeros(16, 1, 1, values.numel(), dtype=torch.uint8)
    out, _ = replace(OFF, p_gamma=1.0, gamma_range=(0.5, 2.0))(image, target, _gen(3))
    out = out[:, 0, 0, 0]
    assert torch.all(out[:, :4] < LEVEL) and torch.all(out[:, 4:] >= LEVEL - 1e-6)
    assert torch.allclose(out[:, [0, 4, 8]], values[[0, 4, 8]].expand(16, 3), atol=1e-6)  # fixed points
    assert float(out[:, 2].std()) > 0.01  # soft tissue contrast changes from patch to patch


def test_white_noise_has_its_sd_in_hu() -> None:
    image = torch.full((2, 1, 16, 32, 32), 0.5)
    target = torch.zeros(2, 16, 32, 32, dtype=torch.uint8)
    out, _ = replace(OFF, p_noise=1.0, noise_sd_hu=(20.0, 20.0))(image, target, _gen(4))
    sd_hu = float((out - 0.5).std()) * 1100
    assert sd_hu == pytest.approx(20.0, rel=0.05)
    neighbour = float(torch.corrcoef(torch.stack([out[..., 1:].flatten(), out[..., :-1].flatten()]))[0, 1])
    assert abs(neighbour) < 0.05


def test_correlated_noise_has_its_sd_and_is_correlated() -> None:
    image = torch.full((2, 1, 16, 32, 32), 0.5)
    target = torch.zeros(2, 16, 32, 32, dtype=torch.uint8)
    aug = replace(
        OFF,
        p_correlated_noise=1.0,
        correlated_noise_sd_hu=(20.0, 20.0),
        correlated_noise_sigma_voxels=(1.5, 1.5),
    )
    out, _ = aug(image, target, _gen(5))
    assert float((out - 0.5).std()) * 1100 == pytest.approx(20.0, rel=0.05)
    neighbour = float(torch.corrcoef(torch.stack([out[..., 1:].flatten(), out[..., :-1].flatten()]))[0, 1])
    assert neighbour > 0.6  # Gaussian sigma 1.5: exp(-1 / (4 * 1.5^2)) = 0.89 in theory


def test_blur_is_anisotropic_and_keeps_the_sum() -> None:
    image = torch.zeros(1, 1, 21, 21, 21)
    image[0, 0, 10, 10, 10] = 1.0
    target = (image[:, 0] > 0).to(torch.uint8)
    out, labels = replace(OFF, p_blur=1.0, blur_sigma_voxels=(0.5, 0.5), blur_sigma_z_voxels=(1.5, 1.5))(
        image, target, _gen(6)
    )
    assert float(out.sum()) == pytest.approx(1.0, abs=1e-5)
    profile_z, profile_x = out[0, 0, :, 10, 10], out[0, 0, 10, 10, :]
    offsets = torch.arange(-10, 11).float()
    sd_z = float(torch.sqrt((profile_z * offsets**2).sum() / profile_z.sum()))
    sd_x = float(torch.sqrt((profile_x * offsets**2).sum() / profile_x.sum()))
    assert sd_z == pytest.approx(1.5, abs=0.05) and sd_x == pytest.approx(0.5, abs=0.1)
    assert torch.equal(labels, target)  # intensity transforms leave the labels alone


def test_same_seed_same_result_and_labels_stay_integer_codes() -> None:
    image, target = _blocks(batch=6)
    everything = Augmentation(
        **{
            name: 1.0
            for name in (
                "p_rotation",
                "p_scale",
                "p_elastic",
                "p_intensity",
                "p_gamma",
                "p_noise",
                "p_correlated_noise",
                "p_blur",
            )
        }
    )
    a = everything(image, target, _gen(7))
    b = everything(image, target, _gen(7))
    c = everything(image, target, _gen(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert a[1].dtype == torch.uint8 and set(a[1].unique().tolist()) <= {0, 1, 3, IGNORE}
    assert float(a[0].min()) >= 0 and float(a[0].max()) <= 1


def test_no_augmentation_is_the_identity_and_defaults_run() -> None:
    image, target = _blocks()
    out, labels = OFF(image, target, _gen(0))
    assert torch.equal(out, image) and torch.equal(labels, target)
    out, labels = Augmentation()(image, target, _gen(0))
    assert out.shape == image.shape and labels.shape == target.shape


def test_settings_round_trip_and_the_first_format_is_read() -> None:
    aug = Augmentation(p_blur=0.5, blur_sigma_voxels=(0.2, 0.4))
    data = aug.to_dict()
    assert data["version"] == 2 and data["blur_sigma_voxels"] == [0.2, 0.4]
    assert Augmentation.from_dict(data) == aug
    old = Augmentation.from_dict(
        {
            "p_spatial": 0.33,
            "rotation_deg": 10.0,
            "scale": 0.1,
            "p_intensity": 0.5,
            "intensity_scale": 0.05,
            "intensity_shift": 0.01,
            "p_noise": 0.3,
            "noise_sd": 0.01,
        }
    )
    assert old.p_rotation == 0.33 and old.scale_range == (0.9, 1.1) and old.p_elastic == 0.0
    assert old.hu_shift_range == pytest.approx((-11.0, 11.0)) and old.noise_sd_hu == pytest.approx(
        (0.0, 11.0)
    )
    with pytest.raises(InvalidInputError, match="p_noise must be a probability"):
        Augmentation(p_noise=1.5)
    with pytest.raises(InvalidInputError, match="scale_range must be a finite"):
        Augmentation(scale_range=(1.2, 0.8))
    with pytest.raises(InvalidInputError, match="unknown augmentation settings"):
        Augmentation.from_dict({"p_flip": 0.5})


def _case() -> CachedCase:
    """A 40^3 case at 3 mm: calcium at the centre, valve-like calcium 30 mm away, bone-like 75 mm away."""
    image = np.full((40, 40, 40), 0.2, np.float32)
    target = np.zeros((40, 40, 40), np.uint8)
    image[20, 20, 20] = 0.7
    target[20, 20, 20] = 3
    image[20, 20, 30] = 0.8  # 10 voxels = 30 mm from the calcium: context
    image[20, 20, 5] = 0.9  # 15 voxels = 45 mm ...
    image[5, 5, 5] = 0.9  # ... and 78 mm away: too far with 60 mm
    return CachedCase("c", image, target, (3.0, 3.0, 3.0))


def test_context_voxels_are_unlabelled_bright_and_near_the_heart() -> None:
    near = context_voxels(_case(), LEVEL, 60.0)
    assert sorted(map(tuple, near.tolist())) == [(20, 20, 5), (20, 20, 30)]
    assert sorted(map(tuple, context_voxels(_case(), LEVEL, 35.0).tolist())) == [(20, 20, 30)]


def test_context_patches_are_centred_on_the_look_alikes() -> None:
    sampler = PatchSampler(
        [_case()],
        (8, 8, 8),
        torch.device("cpu"),
        0.0,
        context_fraction=1.0,
        context_radius_mm=35.0,
        level=LEVEL,
    )
    images, _ = sampler.batch(np.random.default_rng(0), 20)
    assert all(
        float(patch.max()) == pytest.approx(0.8) for patch in images
    )  # every patch holds the valve voxel
    with pytest.raises(InvalidInputError, match="add up to at most 1"):
        PatchSampler([_case()], (8, 8, 8), torch.device("cpu"), 0.9, context_fraction=0.2)
