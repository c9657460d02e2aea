"""Errors meant for people: each names the file, node, op or value at fault and what to do."""


class EdgecError(Exception):
    """A failure the user can act on. `exit_code` is 2 for bad usage or input, 1 for internal."""

    exit_code = 2


class UnsupportedError(EdgecError):
    """The request is valid but this backend, target or precision cannot serve it."""


class InternalError(EdgecError):
    """A failure inside edgec or a toolchain it drives, not caused by the input."""

    exit_code = 1


class CheckFailed(EdgecError):
    """A check the user asked for ran and found a difference (`edgec compare` diverged, emulated outputs
    differ): exit 1, as Polygraphy and test runners do, after the results are printed."""

    exit_code = 1
