"""User-facing errors: bad input that the CLI reports as one line (exit status 2), never a traceback.

The library raises them with a message that names the file (or option) and the field; only the CLI
catches them. They are ``ValueError``s, so library callers may also catch them as such.
"""

from __future__ import annotations


class UserError(ValueError):
    """Input the workflow cannot use: the message says where and what, in one line per problem."""


class ConfigError(UserError):
    """A workflow configuration (file, ``--spec`` or option) that is invalid."""


class SuiteError(UserError):
    """A suite file that cannot be used; ``problems`` holds one line per problem."""

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = problems
        super().__init__("\n".join(f"{path}: {p}" for p in problems))


class CheckpointError(UserError):
    """A checkpoint file that is missing, damaged or for another architecture or config."""


class TableError(UserError):
    """A Parquet table that is missing, unreadable or not of the documented schema."""


class PluginError(UserError):
    """A plug-in method file that cannot run: one line naming the file and the problem."""
