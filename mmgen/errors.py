"""Errors that mean "the user gave us something we cannot use".

The CLI prints these as one line and exits non-zero, without a traceback; anything
else is a bug and keeps its traceback.
"""


class MMGenError(Exception):
    """Base class for user-facing errors (bad input, bad path, wrong checkpoint kind)."""


class DataError(MMGenError):
    """A dataset entry cannot be used: unreadable image, missing caption, unsafe path."""


class CheckpointError(MMGenError):
    """A checkpoint folder is missing, incomplete, or of the wrong kind."""


class ConfigError(MMGenError, ValueError):
    """A setting is out of range or inconsistent (e.g. a batch larger than the dataset)."""
