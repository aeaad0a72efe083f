"""Errors that end a command with one clear line and exit status 2 (bad input, not bugs)."""


class CPMError(Exception):
    """Bad input: a missing or corrupt file, an unknown key, a wrong shape. The message names it."""


class ConfigError(CPMError):
    """An unknown config section or key, a value of the wrong type or out of range."""


class CheckpointError(CPMError):
    """A file that is not a checkpoint, or a checkpoint of another architecture."""
