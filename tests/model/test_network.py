"""Tests of the residual 3-D U-Net and its losses."""

from __future__ import annotations

import math

import pytest
import torch

from cacscore.errors import InvalidInputError
from cacscore.model.network import ResUNet3d, count_parameters, segmentation_loss, soft_dice_loss


def test_default_network_has_about_1_4_million_parameters() -> None:
    n = count_parameters(ResUNet3d())
    assert n == pytest.approx(1.42e6, rel=0.03)


def test_binary_head_differs_only_in_the_last_layer() -> None:
    assert count_parameters(ResUNet3d(n_classes=5)) - count_parameters(ResUNet3d(n_classes=2)) == 3 * 16 + 3


@pytest.mark.parametrize("shape", [(5, 9, 11), (8, 16, 16), (1, 3, 30)])
def test_output_shape_matches_odd_inputs(shape: tuple[int, int, int]) -> None:
    net = ResUNet3d(1, 5, (4, 8, 8, 8)).eval()
    with torch.inference_mode():
        out = net(torch.rand(2, 1, *shape))
    assert tuple(out.shape) == (2, 5, *shape)


def test_first_level_runs_at_full_resolution_with_16_filters() -> None:
    net = ResUNet3d().eval()
    seen: dict[str, tuple[int, ...]] = {}

    def record(name: str) -> object:
        def hook(module: torch.nn.Module, inputs: object, output: torch.Tensor) -> None:
            seen[name] = tuple(output.shape)

        return hook

    net.encoders[0].register_forward_hook(record("level1"))  # type: ignore[arg-type]
    net.encoders[3].register_forward_hook(record("level4"))  # type: ignore[arg-type]
    with torch.inference_mode():
        net(torch.rand(1, 1, 16, 24, 32))
    assert seen["level1"] == (1, 16, 16, 24, 32)
    assert seen["level4"] == (1, 128, 2, 3, 4)


def test_batch_norm_folding_keeps_the_function() -> None:
    torch.manual_seed(0)
    net = ResUNet3d(1, 5, (4, 8, 16))
    for module in net.modules():  # trained-looking statistics, so that folding has something to do
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    net.eval()
    fused = net.fused_for_inference()
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in fused.modules())
    assert any(isinstance(m, torch.nn.BatchNorm3d) for m in net.modules())  # the original is untouched
    x = torch.rand(2, 1, 9, 17, 12)
    with torch.inference_mode():
        expected, got = net(x), fused(x)
    assert expected.abs().max() > 0.1
    assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_onednn_convolution_is_the_same_convolution(monkeypatch: pytest.MonkeyPatch) -> None:
    from cacscore.model.network import OneDNNConv3d

    calls = []
    real = torch.mkldnn_convolution
    monkeypatch.setattr(torch, "mkldnn_convolution", lambda *args: calls.append(1) or real(*args))
    torch.manual_seed(1)
    conv = torch.nn.Conv3d(16, 32, 3, padding=1)  # 1 * 16 * 8 * 8 < 20480: PyTorch's own rule avoids oneDNN
    fast = OneDNNConv3d.from_conv(conv)
    assert fast.weight is conv.weight and fast.bias is conv.bias
    x = torch.rand(1, 16, 8, 8, 8)
    with torch.inference_mode():
        assert torch.allclose(fast(x), conv(x), atol=1e-5)
        assert len(calls) == 1
        with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast keeps PyTorch's path (and bf16)
            assert fast(x).dtype == torch.bfloat16
        assert len(calls) == 1


def test_bad_construction_and_input_raise() -> None:
    with pytest.raises(InvalidInputError, match="filters"):
        ResUNet3d(filters=(16,))
    with pytest.raises(InvalidInputError, match=r"\(B, C, Z, Y, X\)"):
        ResUNet3d(1, 2, (2, 4))(torch.zeros(1, 4, 4, 4))


def _logits(target: torch.Tensor, n_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(target, n_classes).movedim(-1, 1).float() * 50


def test_dice_loss_perfect_is_zero_and_disjoint_is_one() -> None:
    target = torch.zeros(1, 2, 4, 4, dtype=torch.long)
    target[0, 0, :2, :2] = 1
    target[0, 1, 2:, 2:] = 3
    assert float(soft_dice_loss(_logits(target, 5), target)) == pytest.approx(0.0, abs=1e-6)
    wrong = torch.zeros_like(target)
    wrong[0, 1, :2, :2] = 1
    wrong[0, 0, 2:, 2:] = 3
    assert float(soft_dice_loss(_logits(wrong, 5), target)) == pytest.approx(1.0, abs=1e-4)


def test_dice_loss_hand_computed_half_overlap() -> None:
    # Binary: target has 2 calcium voxels, prediction 2 voxels of which 1 overlaps: Dice = 2*1/(2+2) = 0.5.
    target = torch.tensor([[[[1, 1, 0, 0]]]])
    pred = torch.tensor([[[[1, 0, 1, 0]]]])
    assert float(soft_dice_loss(_logits(pred, 2), target)) == pytest.approx(0.5, abs=1e-4)


def test_dice_loss_ignores_invalid_voxels() -> None:
    target = torch.tensor([[[[1, 0, 0, 0]]]])
    pred = torch.tensor([[[[1, 1, 0, 0]]]])
    valid = torch.tensor([[[[True, False, True, True]]]])
    assert float(soft_dice_loss(_logits(pred, 2), target, valid=valid)) == pytest.approx(0.0, abs=1e-4)


def test_dice_ce_adds_cross_entropy_and_checks_kind() -> None:
    target = torch.tensor([[[[1, 0, 0, 0]]]])
    logits = torch.zeros(1, 2, 1, 1, 4)
    dice = float(segmentation_loss(logits, target, "dice"))
    both = float(segmentation_loss(logits, target, "dice_ce"))
    assert both - dice == pytest.approx(float(torch.log(torch.tensor(2.0))), abs=1e-5)
    with pytest.raises(InvalidInputError, match="loss must be"):
        segmentation_loss(logits, target, "focal")


def test_dice_topk_adds_the_cross_entropy_of_the_hardest_tenth_of_voxels() -> None:
    # Ten voxels: one calcium voxel at logits (0, 0), one background voxel wrongly at (0, 5), eight easy ones.
    target = torch.tensor([[[[1, 0, 0, 0, 0, 0, 0, 0, 0, 0]]]])
    logits = torch.zeros(1, 2, 1, 1, 10)
    logits[0, 1, 0, 0, 3] = 5.0
    dice = float(segmentation_loss(logits, target, "dice"))
    mean_ce = (9 * math.log(2) + math.log(1 + math.exp(5))) / 10
    assert float(segmentation_loss(logits, target, "dice_ce")) - dice == pytest.approx(mean_ce, abs=1e-5)
    # The top 10 % is the one hard voxel: its cross-entropy alone.
    assert float(segmentation_loss(logits, target, "dice_topk")) - dice == pytest.approx(
        math.log(1 + math.exp(5)), abs=1e-5
    )
    # Invalid voxels are not among the hardest.
    valid = torch.ones_like(target, dtype=torch.bool)
    valid[0, 0, 0, 3] = False
    assert float(segmentation_loss(logits, target, "dice_topk", valid=valid)) - float(
        segmentation_loss(logits, target, "dice", valid=valid)
    ) == pytest.approx(math.log(2), abs=1e-5)


def test_dice_loss_shape_mismatch_raises() -> None:
    with pytest.raises(InvalidInputError, match="do not match"):
        soft_dice_loss(torch.zeros(1, 2, 3, 3, 3), torch.zeros(1, 3, 3, 4, dtype=torch.long))
