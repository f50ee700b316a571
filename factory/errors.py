"""The error every user-facing failure is raised as: the CLI prints its one line."""


class FactoryError(Exception):
    """A problem with the user's input or work directory; the message names the fix."""
