"""The errors pepx raises on purpose: bad input a user can fix, never a bug.

Every one is printed by the CLI as one line on stderr naming the thing and the reason, with exit status 2
(`PEPX_DEBUG=1` shows the traceback). A genuine bug is any other exception and keeps its traceback.

    PepxError
    ├── ConfigError     a setting, argument or config file that cannot be used (also a ValueError)
    ├── RunError        a run folder that is missing, incomplete or damaged
    │   └── RunInterrupted  training stopped by SIGTERM / SIGINT; exit status 128 + signal (143 / 130)
    ├── BundleError     a model bundle that is malformed or fails its sha256 check
    ├── OutputError     a file pepx was asked to write that cannot be (full disk, a folder or FIFO in the
    │                   way, no permission); also an OSError; the earlier version of the file is kept whole
    └── DataError       (pepx.data.errors) a data source, image or split that cannot be used

`exit_status` is the CLI's exit status for the error (2 unless the class says otherwise).
"""

from __future__ import annotations


class PepxError(Exception):
    """Base class of every error pepx raises on purpose (user-fixable input)."""

    #: Exit status of the `pepx` command when this error ends it.
    exit_status: int = 2


class ConfigError(PepxError, ValueError):
    """A setting, command-line argument or config file that cannot be used; names the setting.

    Also a `ValueError`, so library callers that catch bad values keep working.
    """


class RunError(PepxError):
    """A run folder that is missing, incomplete or damaged; names the folder and what is wrong."""


class RunInterrupted(RunError):
    """Training stopped on SIGTERM or SIGINT after its current batch; the last checkpoint is kept.

    Args:
        run_dir: the run folder.
        signum: the signal received (`signal.SIGTERM` or `signal.SIGINT`).
        message: the one line the CLI prints (names the run and the resume command).
    """

    def __init__(self, run_dir: str, signum: int, message: str) -> None:
        super().__init__(message)
        self.run_dir = run_dir
        self.signum = int(signum)
        self.exit_status = 128 + self.signum


class BundleError(PepxError):
    """A model bundle that is malformed, incomplete or fails its sha256 check; names the bundle."""


class OutputError(PepxError, OSError):
    """A file or folder pepx was asked to write that cannot be written; names it and the reason.

    Also an `OSError`, so callers that catch failed writes keep working. Files are written atomically
    (`pepx.fileio.atomic_path`): whatever was at the path before is kept whole.
    """


__all__ = ["BundleError", "ConfigError", "OutputError", "PepxError", "RunError", "RunInterrupted"]
