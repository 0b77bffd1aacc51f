"""The one exception type that carries a message meant for a person.

Code in every layer raises :class:`UserError` for bad input (a file, a row, a
field, a setting); the interfaces print its message and hint and exit non-zero,
never a traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input, explained: what is wrong, where, and what to do about it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n{self.hint}" if self.hint else self.message


class AdviceWarning(UserWarning):
    """Something a person should know and may fix, that does not stop the work (a secret file
    others can read); the command line prints it as ``warning: ...``."""
