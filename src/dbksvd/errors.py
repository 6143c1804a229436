"""The error classes every layer raises.

Each error carries a one-line message that names the problem; the CLI prints that line and
exits with status 2. They derive from the built-in class that fits (``ValueError`` for bad
values, ``OSError`` for files), so ``except ValueError`` keeps working for callers who do not
know dbksvd.
"""

from __future__ import annotations


class DbksvdError(Exception):
    """Base class of every error dbksvd raises on purpose."""

    def __init__(self, message: str):
        # One line, always: the CLI prints exactly this.
        super().__init__(" ".join(str(message).split()))


class InputError(DbksvdError, ValueError):
    """An array is unusable: wrong shape, dtype, non-finite values, empty, ..."""


class ParameterError(DbksvdError, ValueError):
    """A hyperparameter or argument is out of range or inconsistent with the data."""


class UsageError(ParameterError):
    """A command line the ``dbksvd`` command cannot parse: an unknown option, a missing one."""


class DataFileError(DbksvdError, OSError):
    """A file is missing, unreadable, corrupt, truncated, or lacks the requested key."""


class ModelFormatError(DataFileError):
    """A saved model folder is incomplete, inconsistent, or written by a newer dbksvd."""


class NotFoundError(DbksvdError, LookupError):
    """A requested model, atom, item or file does not exist (the explorer answers 404)."""


class NotFittedError(DbksvdError, ValueError, AttributeError):
    """A model was used before ``fit``."""


class MissingDependencyError(DbksvdError, ImportError):
    """An optional package (an encoder's, a dataset's) is not installed; the message says
    which extra to install, e.g. ``pip install 'dbksvd[embed]'``."""


class ImageError(DataFileError):
    """An image file or upload cannot be decoded: not an image, truncated or damaged, a format not
    allowed, or more pixels than allowed (a decompression bomb). ``reason`` is the short cause,
    ``"<decoder's exception type>: <its message>"``."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = " ".join(str(reason).split()) or self.args[0]
