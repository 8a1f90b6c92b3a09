"""Errors that reach the user as one line, never as a traceback."""


class UserError(Exception):
    """Bad input: the CLI prints the message on one line and exits with ``code``."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code
