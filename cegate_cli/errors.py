"""Every error cegate raises on purpose.

One root, `CegateError`, so the CLI can turn any of them into a one-line message and exit code 2.
Each subclass also inherits the built-in a Python caller would expect (a missing file is still a
`FileNotFoundError`), the pattern rasterio uses (`RasterioIOError(OSError)`).
Messages are written for the user: what is wrong, with which file or value, and what to do.
"""

from __future__ import annotations


class CegateError(Exception):
    """Root of all cegate errors; the CLI prints `Error: <message>` and exits with code 2."""

    exit_code: int = 2


class InputError(CegateError, ValueError):
    """A value the user gave (flag, spec, config) is not usable."""


class DataError(CegateError, ValueError):
    """A data file or folder is not usable (wrong grid, unknown mask values, missing bands)."""


class DataFileNotFoundError(CegateError, FileNotFoundError):
    """An input path the user named does not exist or holds no usable files."""


class BackboneNotFoundError(CegateError, FileNotFoundError):
    """A backbone spec names a repository, revision, folder or file that does not exist."""


class HubAuthError(CegateError, PermissionError):
    """The Hub refused access: a gated or private repository and no (or a wrong) token."""


class OfflineNotCachedError(CegateError, FileNotFoundError):
    """Offline mode (HF_HUB_OFFLINE) and the backbone is not in the local Hub cache."""


class HubConnectionError(CegateError, ConnectionError):
    """The Hub could not be reached and the backbone is not cached."""


class DocumentError(CegateError, ValueError):
    """A YAML or JSON file cegate will not read: unreadable, too large, too deeply nested, aliases
    that expand too far, a key given twice, or not valid YAML/JSON (see `documents.py`).

    `path` and `reason` are kept apart so a reader can name what the file is for and what to do.
    """

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class RunFolderError(CegateError, OSError):
    """A run folder is missing, incomplete, from an incompatible version, or would be overwritten."""


class OutputExistsError(CegateError, FileExistsError):
    """An output already exists and `--overwrite` was not given."""


class InstallError(CegateError, ImportError):
    """The installed packages do not work together (a torchvision built for another torch)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what was finished, what was not, and how to go on.

    Still a `KeyboardInterrupt`, so a Python caller stops as before; the CLI prints the message
    as one line and exits with 130, the shell's code for an interrupt.
    """

    exit_code: int = 130

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class TrainingInterrupted(Interrupted):
    """Ctrl-C during `adapt`'s training: the step it stopped at and how to --resume."""


class MappingInterrupted(Interrupted):
    """Ctrl-C during `predict` or `evaluate`: which scenes were finished and where it stopped."""

    def __init__(self, message: str, finished: tuple[object, ...] = (), total: int = 0) -> None:
        super().__init__(message)
        self.finished = finished
        """The inputs whose outputs are complete (mapped now, or kept from before)."""
        self.total = total
