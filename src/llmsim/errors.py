"""One exception type for every bad input, carrying what is wrong and how to fix it."""

from __future__ import annotations


class LlmsimError(ValueError):
    """A user-facing error: `message` says what is wrong, `hint` how to fix it.

    The CLI prints both and exits with status 2 instead of a traceback.
    """

    def __init__(self, message: str, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(message if not hint else f"{message}; {hint}")
