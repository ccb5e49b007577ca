"""Training augmentation cost: seconds per batch of patches, per transform and all together.

Each transform is timed alone with probability 1 (the worst case), then the
default settings (each transform at its own probability, as in training),
then every transform at once. The patches are drawn from a synthetic
low-resolution volume. Compare with one training step of the same batch
(forward, loss and backward of the default network), timed too.

Usage::

    python benchmarks/bench_augmentation.py [--batch 2] [--patch 64,96,96] [--repeats 10] [--device cpu]
        [--threads N]
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--patch", default="64,96,96")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    import torch

    from cacscore.model.network import ResUNet3d, segmentation_loss
    from cacscore.train.augment import Augmentation

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    patch = tuple(int(v) for v in args.patch.split(","))
    generator = torch.Generator(device=device)
    generator.manual_seed(0)
    images = torch.rand((args.batch, 1, *patch), generator=generator, device=device)
    targets = (images[:, 0] > 0.99).to(torch.uint8) * 3

    def timed(aug: Augmentation) -> float:
        aug(images, targets, generator)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(args.repeats):
            aug(images, targets, generator)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / args.repeats

    off = Augmentation.none()
    cases = {
        "rotation (in-plane + tilt)": replace(off, p_rotation=1.0),
        "scale": replace(off, p_scale=1.0),
        "elastic": replace(off, p_elastic=1.0),
        "rotation + scale + elastic": replace(off, p_rotation=1.0, p_scale=1.0, p_elastic=1.0),
        "intensity (HU scale, shift)": replace(off, p_intensity=1.0),
        "gamma": replace(off, p_gamma=1.0),
        "white noise": replace(off, p_noise=1.0),
        "correlated noise": replace(off, p_correlated_noise=1.0),
        "blur": replace(off, p_blur=1.0),
        "all, each with probability 1": Augmentation(
            **{
                f: 1.0
                for f in (
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
        ),
        "defaults (as in training)": Augmentation(),
    }
    print(f"batch {args.batch} x {patch}, device {device}, {args.threads} threads, {args.repeats} repeats")
    for name, aug in cases.items():
        print(f"{name:32s} {timed(aug) * 1000:8.1f} ms per batch")

    net = ResUNet3d(1, 5, (16, 32, 64, 128)).to(device)
    optimizer = torch.optim.Adam(net.parameters())
    dtype = torch.bfloat16

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype):
            logits = net(images)
        loss = segmentation_loss(logits.float(), targets.long(), "dice_ce")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    repeats = max(1, args.repeats // 3)
    for _ in range(repeats):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    print(
        f"{'training step (bf16 autocast)':32s} "
        f"{(time.perf_counter() - start) / repeats * 1000:8.1f} ms per batch"
    )


if __name__ == "__main__":
    main()
