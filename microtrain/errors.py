"""The error a user can fix: raised anywhere, printed by the CLI as one line with exit code 2.

It sits at the bottom of the layers so that any layer (a target's toolchain, a size parser,
the API) can say what was wrong and how to fix it without importing the CLI.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with what the user asked for: printed as one line, exit code 2."""
