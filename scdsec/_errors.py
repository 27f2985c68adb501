"""Exceptions that carry a message meant for the user."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input: the message names the file (or config key) and the problem.

    The command line prints it as one line and exits non-zero; the workflow's
    scripts let it propagate so the job fails with that message in its log.
    """
