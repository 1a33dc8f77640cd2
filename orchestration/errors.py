"""The one exception type the CLI turns into a one-line error message."""


class CurateError(Exception):
    """A user-facing error: bad input, bad configuration, impossible request."""
