"""One exception type for everything a user can get wrong.

`KsegError` is a `click.ClickException`, so the CLI prints its one-line message and
exits with status 1, with no traceback. It is also a `ValueError`, so library users
can catch it without knowing about click.
"""

import click


class KsegError(click.ClickException, ValueError):
    """A user-facing error: one line that names the file or value and the fix."""

    def __init__(self, message):
        super().__init__(" ".join(str(message).split()))


class DataError(KsegError):
    """A dataset on disk is missing, malformed or inconsistent."""
