"""The coarse grid the anatomy is computed on: block means of about 3 mm, and the way back.

Body, lungs, bone and the mediastinum are organs of centimetres; a grid of
about 3 mm keeps each of them many voxels wide while a 512 x 512 x 60 scan
shrinks to about 64 x 64 x 60 voxels, so that the whole anatomy costs a few
tens of milliseconds. Block means of a few samples (not single samples)
average the image noise down to well inside the gaps between air, lung and
tissue (:data:`SAMPLE_SPACING_MM`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Edge of a coarse voxel, mm: a third of the narrowest structure the check needs whole (a lung or the
#: mediastinum seen in a tight cardiac field of view is >= ~10 mm wide) and still many voxels per organ.
COARSE_VOXEL_MM = 3.0
#: Distance between the samples averaged into a block, mm. 2 x 2 in-plane samples per block average a
#: noise of 30 HU down to 15 HU, far inside the gaps between air (-1000), lung (-850) and tissue (>= -100),
#: and read a sixteenth of a 0.4 mm scan (the block mean is the check's largest cost).
SAMPLE_SPACING_MM = 1.5


@dataclass(frozen=True)
class CoarseGrid:
    """Block-mean grid of a source volume.

    Parameters
    ----------
    source_shape : tuple of 3 int
        ``(Z, Y, X)`` of the source volume.
    block : tuple of 3 int
        Source voxels per coarse voxel along each axis (z, y, x).
    stride : tuple of 3 int
        Step between the samples averaged along each axis; divides ``block``.
    source_spacing : tuple of 3 float
        ``(dz, dy, dx)`` of the source, mm.
    """

    source_shape: tuple[int, int, int]
    block: tuple[int, int, int]
    stride: tuple[int, int, int]
    source_spacing: tuple[float, float, float]

    @classmethod
    def for_volume(cls, shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> CoarseGrid:
        """The grid of about :data:`COARSE_VOXEL_MM` voxels for a volume of ``shape`` and ``spacing`` (mm).

        Examples
        --------
        >>> grid = CoarseGrid.for_volume((60, 512, 512), (2.5, 0.4, 0.4))
        >>> grid.block, grid.stride, grid.shape
        ((1, 8, 8), (1, 4, 4), (60, 64, 64))
        """
        blocks, strides = [], []
        for axis, (n, step_mm) in enumerate(zip(shape, spacing)):
            # Along z one slice per block: slices are few and the in-plane samples already average the noise.
            stride = (
                max(1, int(round(COARSE_VOXEL_MM / step_mm)))
                if axis == 0
                else max(1, int(round(SAMPLE_SPACING_MM / step_mm)))
            )
            per_block = max(1, int(round(COARSE_VOXEL_MM / (stride * step_mm))))
            block = stride * per_block
            while block > n and block > 1:  # a tiny volume: one block of what there is
                stride, block = max(1, stride // 2), max(1, block // 2)
                block -= block % stride
            blocks.append(max(block, 1))
            strides.append(stride if block % stride == 0 else 1)
        return cls(
            (int(shape[0]), int(shape[1]), int(shape[2])),
            (blocks[0], blocks[1], blocks[2]),
            (strides[0], strides[1], strides[2]),
            (float(spacing[0]), float(spacing[1]), float(spacing[2])),
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(Z', Y', X')`` of the coarse grid (a partial block at the far end is dropped)."""
        return tuple(max(1, n // b) for n, b in zip(self.source_shape, self.block))  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Coarse voxel size ``(dz, dy, dx)``, mm."""
        return tuple(s * b for s, b in zip(self.source_spacing, self.block))  # type: ignore[return-value]

    @property
    def voxel_ml(self) -> float:
        """Volume of one coarse voxel, mL."""
        return float(np.prod(self.spacing)) / 1000.0

    def block_mean(self, hu: np.ndarray) -> np.ndarray:
        """Mean HU of each block, ``(Z', Y', X')`` float32.

        Parameters
        ----------
        hu : (Z, Y, X) ndarray
            The source volume, HU.
        """
        nz, ny, nx = self.shape
        bz, by, bx = self.block
        sz, sy, sx = self.stride
        part = hu[: nz * bz : sz, : ny * by : sy, : nx * bx : sx]
        blocks = part.reshape(nz, bz // sz, ny, by // sy, nx, bx // sx)
        return blocks.mean(axis=(1, 3, 5), dtype=np.float32)

    def source_index(self, axis: int, start: int, stop: int) -> np.ndarray:
        """Coarse index of each source index ``start..stop-1`` along ``axis``.

        The remainder joins the last block.
        """
        return np.minimum(np.arange(start, stop) // self.block[axis], self.shape[axis] - 1)

    def to_source(self, coarse: np.ndarray, box: tuple[slice, slice, slice] | None = None) -> np.ndarray:
        """Nearest-neighbour copy of a coarse array onto the source grid, or onto a box of it.

        Parameters
        ----------
        coarse : (Z', Y', X') ndarray
        box : tuple of 3 slice, optional
            Part of the source grid (default: all of it).

        Returns
        -------
        ndarray
            Shape of the box (or of the source volume), dtype of ``coarse``.
        """
        parts = box if box is not None else tuple(slice(0, n) for n in self.source_shape)
        index = [
            self.source_index(axis, *part.indices(self.source_shape[axis])[:2])
            for axis, part in enumerate(parts)
        ]
        return coarse[np.ix_(*index)]
