"""Classical anatomy of a CT volume: body, lungs, bone, the mediastinum and the heart region.

Thresholds, connected components and morphology on a ~3 mm grid (scipy.ndimage),
no network: :func:`check_domain` decides whether a scan is a non-contrast CT
with a heart in view and finds the heart region, and
:func:`exclude_outside_heart` removes predicted calcium outside that region
or joined to bone.
"""

from cacscore.anatomy.chest import ChestAnatomy, analyse_chest
from cacscore.anatomy.domain import (
    ContrastEnhancedError,
    DomainCheck,
    DomainError,
    NoHeartError,
    check_domain,
)
from cacscore.anatomy.exclusion import Exclusion, exclude_outside_heart
from cacscore.anatomy.heart_region import HeartRegion

__all__ = [
    "ChestAnatomy",
    "ContrastEnhancedError",
    "DomainCheck",
    "DomainError",
    "Exclusion",
    "HeartRegion",
    "NoHeartError",
    "analyse_chest",
    "check_domain",
    "exclude_outside_heart",
]
