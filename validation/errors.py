"""The one error of `mapper validate` (its own module so that every validation module can raise it)."""

from __future__ import annotations


class ValidationInputError(ValueError):
    """Input that cannot be validated as given (not a run directory, unreadable state); names the fix."""
