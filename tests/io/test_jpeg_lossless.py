"""The lossless JPEG encoder, checked against pylibjpeg-libjpeg's decoder through pydicom."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGLosslessSV1

from cacscore.io.jpeg_lossless import encode_jpeg_lossless


def _decode(stream: bytes, shape: tuple[int, int], precision: int, signed: bool) -> np.ndarray:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    ds.Rows, ds.Columns = shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = precision
    ds.HighBit = precision - 1
    ds.PixelRepresentation = int(signed)
    ds.PixelData = encapsulate([stream])
    return ds.pixel_array


@pytest.mark.parametrize(("precision", "signed"), [(16, False), (16, True), (12, False), (12, True)])
def test_random_images_decode_exactly(precision: int, signed: bool) -> None:
    rng = np.random.default_rng(precision + signed)
    low, high = (-(1 << (precision - 1)), 1 << (precision - 1)) if signed else (0, 1 << precision)
    image = rng.integers(low, high, size=(40, 24))
    image[0, :2] = low, high - 1  # the extreme differences, incl. category 16
    dtype = np.int16 if signed else np.uint16
    stream = encode_jpeg_lossless(image.astype(dtype), precision)
    assert stream[:4] == b"\xff\xd8\xff\xc3" and stream[-2:] == b"\xff\xd9"
    np.testing.assert_array_equal(_decode(stream, image.shape, precision, signed), image)


def test_constant_image_hand_checked() -> None:
    # 2x2 zeros: first pixel differs from the 2**15 prediction by -32768 (category 16, code 10000);
    # the other three have difference 0 (code 00000): 20 bits, padded with 1s to 3 bytes.
    stream = encode_jpeg_lossless(np.zeros((2, 2), dtype=np.uint16), 16)
    scan_end = stream.index(b"\xff\xda") + 10
    assert stream[scan_end:-2] == bytes([0b10000000, 0b00000000, 0b00001111])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="precision 2-16"):
        encode_jpeg_lossless(np.zeros((2, 2, 2), dtype=np.uint16), 16)
