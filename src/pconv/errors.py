"""The one exception type users see: a problem they can fix, stated with the fix."""


class PConvError(ValueError):
    """Bad input or configuration. The CLI and the HTTP API print its message without a traceback.

    Subclasses ValueError so library callers can catch it the usual way.
    """
