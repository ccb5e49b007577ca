"""Exceptions and warnings raised by cacscore.

Every error a user can cause (a bad file, a wrong option, a model folder that
does not match the code) is a :class:`CacScoreError`. The command line turns
these into a one-line message and a non-zero exit code, never a traceback, so
each message must name the file or parameter concerned and, where possible,
say how to fix it.
"""

from __future__ import annotations


class CacScoreError(Exception):
    """Base class of every error that cacscore raises on purpose."""


class InvalidInputError(CacScoreError, ValueError):
    """An argument or an input file has a value cacscore cannot work with."""


class VolumeReadError(InvalidInputError):
    """A CT volume (DICOM series, NIfTI, MetaImage, NRRD) could not be read.

    The message names the file or folder and the problem, e.g. missing
    slices, uneven slice spacing, a non-CT modality or gantry tilt.
    """


class DicomReadError(VolumeReadError):
    """A DICOM series could not be turned into a CT volume."""


class ModelFolderError(CacScoreError):
    """A model folder is missing, incomplete or unreadable."""


class PlanMismatchError(ModelFolderError):
    """A model folder's ``plan.json`` does not match this version of the code."""


class CacScoreWarning(UserWarning):
    """Something is unusual but scoring can go on (e.g. kVp other than 120)."""
