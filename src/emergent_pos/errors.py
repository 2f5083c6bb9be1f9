"""The one exception type a stage reports as a one-line message instead of a traceback.

Library code raises a ``UserError`` subclass for anything the user can fix (a bad param,
a missing input, mismatched files); ``io.cli.run`` prints it in one line and exits 2.
"""

from __future__ import annotations


class UserError(Exception):
    """A failure the user can fix; its message is one line that says how."""


class NotApplicable(UserError):
    """What a stage measures does not exist in this model (no attention heads, logits it cannot
    read): the stage completes and says so in its outputs instead of failing (``analysis/applies.py``)."""
