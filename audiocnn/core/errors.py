"""One error hierarchy: every expected failure is an :class:`AudiocnnError` with the exit status the CLI uses.

The command line catches :class:`AudiocnnError` alone and prints its message on one line; any other exception is
a bug and keeps its traceback. Messages say what was wrong, where (file, key, value) and what to do.

==========================  =====  =============================================================
class                       exit   raised for
==========================  =====  =============================================================
:class:`ConfigError`        2      a recipe, an override or a command-line value is invalid
:class:`DataError`          2      a dataset is missing, malformed, or its splits are empty
:class:`CheckpointError`    2      a checkpoint or run folder is missing or not audiocnn's
:class:`ModelError`         2      an unknown model, bad model arguments, weights that do not fit
:class:`DownloadError`      2      a download or an archive failed its checks
:class:`NotFoundError`      2      a file or folder the user named is missing
:class:`UnknownNameError`   2      a name not in a registry (also a ``KeyError``)
:class:`EnvironmentFailure` 3      the machine cannot do it: no such device, disk full, read-only
==========================  =====  =============================================================

Errors with fields of their own (``AudioError`` in :mod:`audiocnn.audio.io`, ``ImageError``, ``WriteFailure`` in
:mod:`audiocnn.core.io`: a full disk or a read-only folder) and domain errors
(``EmbedError``, ``HearError`` ...) subclass one of these in their own module.
"""
from __future__ import annotations

__all__ = [
    "AudiocnnError", "CheckpointError", "ConfigError", "DataError", "DownloadError",
    "EnvironmentFailure", "ModelError", "NotFoundError", "UnknownNameError",
]


class AudiocnnError(Exception):
    """An expected failure; ``exit_code`` is the command line's exit status for it."""

    exit_code = 2


class ConfigError(AudiocnnError, ValueError):
    """A recipe or override is invalid; the message says where and what to do."""


class DataError(AudiocnnError):
    """A dataset cannot be used as asked (missing folder, bad manifest, empty split)."""


class CheckpointError(AudiocnnError, RuntimeError):
    """A checkpoint file or run folder is missing, unreadable or not made by audiocnn."""


class ModelError(AudiocnnError, TypeError):
    """An unknown model, arguments a model does not take, or weights that do not fit it."""


class DownloadError(AudiocnnError, RuntimeError):
    """A download failed, or what arrived did not pass its checks."""


class NotFoundError(AudiocnnError, FileNotFoundError):
    """A file or folder the user named does not exist (also a ``FileNotFoundError``)."""


class UnknownNameError(AudiocnnError, KeyError):
    """A name that is not registered (a ``KeyError`` too, for ``name in registry``-style callers)."""

    def __str__(self) -> str:  # KeyError quotes its argument; this is a sentence
        return str(self.args[0]) if self.args else ""


class EnvironmentFailure(AudiocnnError, RuntimeError):
    """The machine cannot do what was asked (device, disk, permissions): not the user's recipe."""

    exit_code = 3
