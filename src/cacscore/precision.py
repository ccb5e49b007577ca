"""Inference precisions of the model, and whether this CPU computes bf16 natively.

Torch-free at import, so that the command line can offer the choices without loading PyTorch.
"""

from __future__ import annotations

import warnings
from typing import Literal, get_args

from cacscore.errors import CacScoreWarning

#: An inference precision (the type; :data:`PRECISIONS` lists them).
Precision = Literal["fp32", "bf16"]
#: Inference precisions. ``fp32`` is the reference: every shipped figure is measured in it and it is the
#: default. ``bf16`` runs the members under bfloat16 autocast: about twice as fast where the CPU computes
#: bf16 natively, with masks that can differ from fp32's, most on data unlike the training phantoms
#: (``benchmarks/bench_precision.py``).
PRECISIONS: tuple[str, ...] = get_args(Precision)


def native_bf16() -> bool | None:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX); None where torch cannot say.

    Elsewhere bf16 is emulated and slower than fp32.
    """
    import torch

    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # private helpers of torch.cpu: absent in some builds
        return None


def warn_if_emulated(precision: str) -> None:
    """Warn (CacScoreWarning) where ``precision`` is bf16 and this CPU emulates bf16."""
    if precision == "bf16" and native_bf16() is False:
        warnings.warn(
            "bf16 inference on a CPU without native bf16 (AVX512-BF16 or AMX) is emulated and slower "
            "than fp32",
            CacScoreWarning,
            stacklevel=3,
        )
