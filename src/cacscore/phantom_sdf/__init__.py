"""A second phantom family, built independently of :mod:`cacscore.phantom`: signed-distance anatomy.

The heart is a smooth blend of superquadric chambers with random size, shape,
orientation and layout, wrapped in epicardial fat of random, patchy
thickness; coronary trees run as tubes in the atrioventricular and
interventricular grooves (right, left or co-dominant); calcified plaques, from
specks to long eccentric or ring plaques, sit anywhere along the tree and at
bifurcations. The chest (lungs, chest wall, ribs, sternum, spine, aorta,
diaphragm, breasts) is built around the heart. The imaging chain samples the
continuous object with a slice profile, an in-plane point spread and
band-pass textured noise. It shares only the scoring (:mod:`cacscore.scoring`),
the label codes and the writers (:mod:`cacscore.io`) with the classic family,
and writes the same cohort layout. Chosen with ``cacscore phantom --family sdf``;
see ``docs/phantom.md``.
"""

from __future__ import annotations

from cacscore.phantom_sdf.case import FAMILY, GENERATOR_VERSION, SdfCase, SdfConfig, generate_case
from cacscore.phantom_sdf.cohort import generate_cohort, write_case, write_preview

__all__ = [
    "FAMILY",
    "GENERATOR_VERSION",
    "SdfCase",
    "SdfConfig",
    "generate_case",
    "generate_cohort",
    "write_case",
    "write_preview",
]
