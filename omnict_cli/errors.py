"""The one family of errors omnict raises for problems a user can fix.

Each error carries the file it is about, what is wrong, and a hint saying
what to do, so the command line can print one clear line per bad input and
carry on. Unexpected errors are not wrapped: they keep their traceback.
"""

from __future__ import annotations

from pathlib import Path


class OmnictError(Exception):
    """Base class: a problem with the user's input or options, not a bug."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | Path | None = None, hint: str = ""):
        self.message = message
        self.path = None if path is None else str(path)
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """``<file>: <problem>. <hint>`` on a single line."""
        text = self.message if self.path is None else f"{self.path}: {self.message}"
        if self.hint:
            text = f"{text.rstrip('.')}. {self.hint}"
        return " ".join(text.split())


class StudyLoadError(OmnictError):
    """A study could not be read or is not usable as CT."""


class NotCTError(StudyLoadError):
    """The study is another modality (MR, PT, ...) and non-CT was not allowed."""


class StudyTooLargeError(StudyLoadError):
    """The study has more voxels than the configured limit."""


class OutputError(OmnictError):
    """A file or folder omnict was asked to write cannot be written there."""
