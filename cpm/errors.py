"""Errors that end a command with one clear line and exit status 2 (bad input, not bugs)."""


class CPMError(Exception):
    """Bad input: a missing or corrupt file, an unknown key, a wrong shape. The message names it."""


class ConfigError(CPMError):
    """An unknown config section or key, a value of the wrong type or out of range."""


class CheckpointError(CPMError):
    """A file that is not a checkpoint, or a checkpoint of another architecture."""


def first_line(error: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (its type's name when it has none), at most ``limit`` characters:
    what a one-line error quotes of a library's longer one."""
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:limit]
