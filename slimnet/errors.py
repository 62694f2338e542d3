class SlimnetError(Exception):
    """A user-facing error: the message is one line naming the problem and how to fix it."""
