"""The errors pepx raises on purpose: bad input a user can fix, never a bug.

Every one is printed by the CLI as one line on stderr naming the thing and the reason, with exit status 2
(`PEPX_DEBUG=1` shows the traceback). A genuine bug is any other exception and keeps its traceback.

    PepxError
    ├── ConfigError     a setting, argument or config file that cannot be used
    ├── RunError        a run folder that is missing, incomplete or damaged
    ├── BundleError     a model bundle that is malformed or fails its checksum
    └── DataError       (pepx.data.errors) a data source, image or split that cannot be used
"""

from __future__ import annotations


class PepxError(Exception):
    """Base class of every error pepx raises on purpose (user-fixable input)."""


class ConfigError(PepxError):
    """A setting, command-line argument or config file that cannot be used; names the setting."""


class RunError(PepxError):
    """A run folder that is missing, incomplete or damaged; names the folder and what is wrong."""


class BundleError(PepxError):
    """A model bundle that is malformed, incomplete or fails its sha256 check; names the bundle."""


__all__ = ["BundleError", "ConfigError", "PepxError", "RunError"]
