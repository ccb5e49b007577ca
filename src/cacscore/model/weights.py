"""Member weights on disk: safetensors in float16, rebuilt into networks from the plan's init arguments."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from cacscore.errors import ModelFolderError, PlanMismatchError
from cacscore.io.atomic import atomic_path
from cacscore.model.network import ResUNet3d

if TYPE_CHECKING:
    pass


def save_member(net: torch.nn.Module, path: str | Path, *, half: bool = True) -> Path:
    """Write a network's weights as safetensors (floating tensors as float16 when ``half``)."""
    from safetensors.torch import save_file

    state = {
        key: (
            value.detach().to("cpu").half()
            if half and value.is_floating_point()
            else value.detach().to("cpu")
        ).contiguous()
        for key, value in net.state_dict().items()
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        # safetensors makes its file private (0600); atomic_path gives it open()'s mode back, as a
        # model folder is meant to be shared.
        save_file(state, str(tmp))
    return path


def load_member(path: str | Path, init_args: dict[str, Any]) -> ResUNet3d:
    """Rebuild one member from its init arguments and safetensors weights (float32, eval mode).

    Raises
    ------
    ModelFolderError
        If the file is missing or unreadable.
    PlanMismatchError
        If the weights do not fit the network described by the plan.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ModelFolderError(f"{path}: member weights are missing")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ModelFolderError(f"{path}: cannot read weights ({exc})") from None
    net = ResUNet3d(**init_args)
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or extra or wrong:
        raise PlanMismatchError(
            f"{path}: weights do not match the plan's network (missing {missing[:3]}, "
            f"unexpected {extra[:3]}, wrong shape {wrong[:3]})"
        )
    net.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    return net.eval()
