"""The paper's 3-D residual U-Net (Gogin et al. 2021, Figure 2), in plain PyTorch.

Four levels; the first computes ``filters[0]`` feature maps at the full input
resolution (its convolutions have stride 1), each max pooling halves the grid
and doubles the filters (16, 32, 64, 128). Each level is a residual block:
two 3x3x3 convolutions with batch normalisation and ELU, added to a 1x1x1
projection of the block input. The decoder mirrors the encoder: a 2x2x2
transposed convolution halves the filters, the skip connection is
concatenated and a residual block follows. About 1.42 M parameters with the
defaults.

Shape rule: the grid must be divisible by ``2 ** (levels - 1)`` (8 by
default); :class:`ResUNet3d` pads its input with zeros (the scaled value of
-300 HU and below) to the next multiple and crops the output back, so any
input size works: ``(B, 1, 37, 90, 91) -> (B, n_classes, 37, 90, 91)``.
"""

from __future__ import annotations

import copy
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from cacscore.errors import InvalidInputError

#: Output classes of each head. ``arteries`` class k > 0 is project code k + 1.
HEAD_CLASSES: dict[str, int] = {"arteries": 5, "binary": 2}


class OneDNNConv3d(nn.Conv3d):
    """A :class:`torch.nn.Conv3d` that always runs oneDNN for float32 on the CPU.

    PyTorch picks the CPU convolution backend with a size rule made for 2-D
    inputs (N * C * D * H > 20480): most of this network's 3-D convolutions
    below full resolution fall under it and go to a generic im2col path,
    measured 3-9x slower on 2 cores (16 -> 32 filters on 32^3 voxels: 36 ms
    against 3.9 ms). Other devices, dtypes and autocast use the normal path.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.device.type == "cpu"
            and x.dtype == torch.float32
            and self.padding_mode == "zeros"
            and isinstance(self.padding, tuple)
            and not torch.is_autocast_enabled("cpu")
        ):
            return torch.mkldnn_convolution(
                x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups
            )
        return super().forward(x)

    @classmethod
    def from_conv(cls, conv: nn.Conv3d) -> OneDNNConv3d:
        """The same convolution, sharing ``conv``'s parameters."""
        # A Conv3d's kernel_size, stride, dilation and tuple padding always hold three ints.
        kernel = cast(tuple[int, int, int], conv.kernel_size)
        stride = cast(tuple[int, int, int], conv.stride)
        padding = conv.padding if isinstance(conv.padding, str) else cast(tuple[int, int, int], conv.padding)
        dilation = cast(tuple[int, int, int], conv.dilation)
        new = cls(
            conv.in_channels,
            conv.out_channels,
            kernel,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
            device=conv.weight.device,
            dtype=conv.weight.dtype,
        )
        new.weight = conv.weight
        new.bias = conv.bias
        return new


class ResBlock3d(nn.Module):
    """Two 3x3x3 convolutions (BN, ELU) plus a 1x1x1 projection of the input."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, out_channels, 3, padding=1, bias=False)
        # nn.Module: fuse_for_inference replaces the batch norms by identities.
        self.bn1: nn.Module = nn.BatchNorm3d(out_channels)
        self.conv2 = nn.Conv3d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2: nn.Module = nn.BatchNorm3d(out_channels)
        self.skip = nn.Conv3d(in_channels, out_channels, 1, bias=False)
        self.act = nn.ELU(inplace=True)

    def fuse_for_inference(self) -> None:
        """Fold both batch normalisations into their convolutions and run those with oneDNN (eval mode)."""
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        if not (isinstance(self.bn1, nn.BatchNorm3d) and isinstance(self.bn2, nn.BatchNorm3d)):
            return  # already fused
        self.conv1 = OneDNNConv3d.from_conv(fuse_conv_bn_eval(self.conv1, self.bn1))
        self.conv2 = OneDNNConv3d.from_conv(fuse_conv_bn_eval(self.conv2, self.bn2))
        self.bn1, self.bn2 = nn.Identity(), nn.Identity()
        self.skip = OneDNNConv3d.from_conv(self.skip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.act(y + self.skip(x))


class ResUNet3d(nn.Module):
    """3-D residual U-Net.

    Parameters
    ----------
    in_channels : int
        Input channels (1: the scaled CT).
    n_classes : int
        Output channels (logits); 5 for the ``arteries`` head, 2 for ``binary``.
    filters : tuple of int
        Filters per level, first level at full resolution; (16, 32, 64, 128).

    Raises
    ------
    InvalidInputError
        If fewer than two levels or non-positive sizes are given.

    Examples
    --------
    >>> net = ResUNet3d(1, 5, (4, 8))
    >>> tuple(net(torch.zeros(1, 1, 5, 6, 7)).shape)
    (1, 5, 5, 6, 7)
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 5,
        filters: tuple[int, ...] | list[int] = (16, 32, 64, 128),
    ) -> None:
        super().__init__()
        filters = tuple(int(f) for f in filters)
        if len(filters) < 2 or min(filters) < 1 or in_channels < 1 or n_classes < 2:
            raise InvalidInputError(
                f"ResUNet3d needs >= 2 levels of positive filters, in_channels >= 1 and n_classes >= 2; "
                f"got filters={filters}, in_channels={in_channels}, n_classes={n_classes}"
            )
        self.init_args: dict[str, Any] = {
            "in_channels": int(in_channels),
            "n_classes": int(n_classes),
            "filters": list(filters),
        }
        self.divisor = 2 ** (len(filters) - 1)
        self.encoders = nn.ModuleList()
        channels = in_channels
        for width in filters:
            self.encoders.append(ResBlock3d(channels, width))
            channels = width
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for width in reversed(filters[:-1]):
            self.ups.append(nn.ConvTranspose3d(channels, width, 2, stride=2))
            self.decoders.append(ResBlock3d(2 * width, width))
            channels = width
        self.head = nn.Conv3d(channels, n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, n_classes, Z, Y, X)`` of an input ``(B, in_channels, Z, Y, X)``."""
        if x.ndim != 5:
            raise InvalidInputError(f"input must be (B, C, Z, Y, X), got shape {tuple(x.shape)}")
        size = x.shape[2:]
        pad = [(-n) % self.divisor for n in size]
        if any(pad):
            # F.pad takes (x_before, x_after, y_before, y_after, z_before, z_after).
            x = F.pad(x, (0, pad[2], 0, pad[1], 0, pad[0]))
        skips = []
        for level, encoder in enumerate(self.encoders):
            if level:
                x = F.max_pool3d(x, 2)
            x = encoder(x)
            skips.append(x)
        for up, decoder, skip in zip(self.ups, self.decoders, reversed(skips[:-1])):
            x = decoder(torch.cat([up(x), skip], dim=1))
        logits = self.head(x)
        return logits[:, :, : size[0], : size[1], : size[2]]

    def fused_for_inference(self) -> ResUNet3d:
        """A copy for inference: eval mode, batch norm folded into the convolutions, oneDNN convolutions.

        The same function up to float rounding (~1e-5 on the logits), with 14
        fewer passes over the feature maps and no slow convolution path (see
        :class:`OneDNNConv3d`); not the trainable network of the paper any more.
        """
        fused = copy.deepcopy(self).eval()
        for block in fused.modules():
            if isinstance(block, ResBlock3d):
                block.fuse_for_inference()
        fused.head = OneDNNConv3d.from_conv(fused.head)
        return fused


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def soft_dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    valid: torch.Tensor | None = None,
    include_background: bool = False,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Soft multi-class Dice loss: 1 - mean Dice over the classes present in the target, pooled over a batch.

    Classes absent from the whole batch are left out of the mean: with tiny
    calcifications most patches lack most arteries, and a smoothed Dice of an
    absent class would only push every probability of that class to zero.

    Parameters
    ----------
    logits : (B, C, Z, Y, X) tensor
        Network outputs before softmax.
    target : (B, Z, Y, X) tensor of int
        Class indices in [0, C).
    valid : (B, Z, Y, X) tensor of bool, optional
        Voxels that count (others are ignored, e.g. calcium of unknown artery).
    include_background : bool
        Count class 0 in the mean (the calcium classes alone by default, since
        background Dice is ~1 whatever the prediction).
    eps : float
        Smoothing.

    Returns
    -------
    scalar tensor
        0 for a perfect prediction, about 1 for a disjoint one.

    Raises
    ------
    InvalidInputError
        If the shapes do not match.
    """
    if (
        logits.ndim != target.ndim + 1
        or logits.shape[0] != target.shape[0]
        or logits.shape[2:] != target.shape[1:]
    ):
        raise InvalidInputError(
            f"logits (B, C, ...) {tuple(logits.shape)} and target (B, ...) {tuple(target.shape)} do not match"
        )
    n_classes = logits.shape[1]
    probs = torch.softmax(logits.float(), dim=1)
    onehot = F.one_hot(target.long().clamp(0, n_classes - 1), n_classes).movedim(-1, 1).float()
    if valid is not None:
        weight = valid.float().unsqueeze(1)
        probs = probs * weight
        onehot = onehot * weight
    dims = (0, *range(2, logits.ndim))
    intersection = (probs * onehot).sum(dims)
    denominator = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * intersection + eps) / (denominator + eps)
    present = onehot.sum(dims) > 0
    if not include_background:
        dice, present = dice[1:], present[1:]
    if not bool(present.any()):
        # Nothing to find: false positives are left to the cross-entropy term (dice_ce, dice_topk).
        return (1 - dice).sum() * 0
    return 1 - dice[present].mean()


#: Losses of :func:`segmentation_loss`.
LOSSES = ("dice", "dice_ce", "dice_topk")
#: Percentage of voxels whose cross-entropy the ``"dice_topk"`` loss averages (nnU-Net's TopK10).
TOPK_PERCENT = 10.0


def segmentation_loss(
    logits: torch.Tensor, target: torch.Tensor, kind: str = "dice", valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Soft Dice loss plus, optionally, a voxel cross-entropy term.

    ``"dice"``: Dice alone (the paper). ``"dice_ce"``: Dice + the mean
    cross-entropy of the valid voxels. ``"dice_topk"``: Dice + the mean
    cross-entropy of the :data:`TOPK_PERCENT` % valid voxels where it is
    highest, as nnU-Net's ``DC_and_topk_loss``: calcium of the aortic valve
    and root is a handful of voxels among the many easy bone voxels that
    dominate a plain mean, and a patch without coronary calcium gives the
    Dice term nothing to penalise it by.

    Parameters
    ----------
    logits : (B, C, Z, Y, X) tensor
    target : (B, Z, Y, X) tensor of int
    kind : {"dice", "dice_ce", "dice_topk"}
    valid : (B, Z, Y, X) tensor of bool, optional
        Voxels that count.

    Raises
    ------
    InvalidInputError
        On an unknown ``kind``.
    """
    if kind not in LOSSES:
        raise InvalidInputError(f"loss must be one of {', '.join(LOSSES)}, got {kind!r}")
    loss = soft_dice_loss(logits, target, valid=valid)
    if kind == "dice":
        return loss
    ce = F.cross_entropy(logits.float(), target.long(), reduction="none")
    ce = ce[valid] if valid is not None else ce.reshape(-1)
    if ce.numel() == 0:
        return loss
    if kind == "dice_topk":
        ce = torch.topk(ce, max(1, round(ce.numel() * TOPK_PERCENT / 100)), sorted=False).values
    return loss + ce.mean()
