"""cacscore: automatic coronary artery calcium scoring from non-contrast, ECG-gated cardiac CT.

Arrays are ``(z, y, x)``; spacing is ``(dz, dy, dx)`` in mm with ``dz`` the
slice increment; intensities are Hounsfield units (HU).
"""

from __future__ import annotations

__version__ = "0.4.0"

__all__ = ["__version__"]
