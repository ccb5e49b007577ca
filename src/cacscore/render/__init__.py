"""Pictures of a score for people: key images of the counted calcium (PNG, also embedded in the PDF).

Rendering only (matplotlib, no scoring): :mod:`~cacscore.render.key_images` draws
one zoomed crop per lesion and one overview slice per artery from a volume, its
label mask and the lesions of its score.
"""

from __future__ import annotations

from cacscore.render.key_images import (
    CROP_MM,
    KEY_IMAGE_DPI,
    key_images_png,
    orientation_labels,
    write_key_images,
)

__all__ = ["CROP_MM", "KEY_IMAGE_DPI", "key_images_png", "orientation_labels", "write_key_images"]
