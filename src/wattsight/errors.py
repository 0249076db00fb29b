"""Every exception wattsight raises, in one tree.

::

    WattsightError                  base: catch this to catch everything of ours
    ├── ConfigError                 a bad configuration file or value (exit code 2)
    ├── SampleError                 a sample, series or probe id that breaks the contract
    ├── PluginError                 a driver or consumer that cannot be found or loaded
    │   └── MissingDependency       an optional extra is not installed (says what to pip install)
    ├── DriverError                 a meter could not be read (names the probe or host)
    │   ├── MeterUnreachable        no answer / connection refused / time-out
    │   ├── MeterAuthError          wrong credentials
    │   ├── MeterPermissionError    a local file or device we may not read
    │   └── MeterReplyError         a reply that is malformed, missing or out of range
    ├── BusError                    the bus could not be set up (bad endpoint, address in use)
    │   └── MessageRefused          a message failed a check (bad signature, replay, ...)
    ├── StoreError                  the store cannot write or read its files
    └── QueryError                  a query that cannot be answered as asked (API: 4xx)

Every message says what failed, on which probe, host or file, what was expected and what
to do about it.  Errors are caught only at the runner boundary and in the CLI.
"""

from __future__ import annotations


class WattsightError(Exception):
    """Base of every wattsight error."""


class ConfigError(WattsightError):
    """A configuration file or value is wrong.

    ``str()`` reads ``file:line: key: problem (expected ...). hint``.
    """

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 key: str | None = None, expected: str | None = None, hint: str | None = None) -> None:
        self.file, self.line, self.key, self.expected, self.hint = file, line, key, expected, hint
        self.problem = message
        where = ""
        if file:
            where = f"{file}:{line}: " if line else f"{file}: "
        text = where + (f"{key}: " if key else "") + message
        if expected:
            text += f" (expected {expected})"
        if hint:
            text += f". Hint: {hint}"
        super().__init__(text)


class SampleError(WattsightError, ValueError):
    """A sample, series or probe id that breaks the contract."""


class PluginError(WattsightError):
    """A driver or consumer cannot be found or loaded."""


class MissingDependency(PluginError, ImportError):
    """An optional dependency is missing; the message says what to install."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the Python package {package!r}: pip install 'wattsight[{extra}]'"
        )


class DriverError(WattsightError):
    """A meter could not be read.  ``probe`` names the probe or host."""

    def __init__(self, message: str, *, probe: str | None = None) -> None:
        self.probe = probe
        super().__init__(f"{probe}: {message}" if probe else message)


class MeterUnreachable(DriverError):
    """The meter did not answer (refused, no route, time-out)."""


class MeterAuthError(DriverError):
    """The meter refused our credentials."""


class MeterPermissionError(DriverError):
    """A local file or device may not be read by this user."""


class MeterReplyError(DriverError):
    """The meter answered something malformed, missing or out of range."""


class BusError(WattsightError):
    """The bus cannot be set up."""


class MessageRefused(BusError):
    """A bus message failed a check.  ``cause`` is a short machine-readable word."""

    def __init__(self, cause: str, detail: str = "") -> None:
        self.cause = cause
        super().__init__(f"message refused ({cause}){': ' + detail if detail else ''}")


class StoreError(WattsightError):
    """The store cannot write or read its files."""


class QueryError(WattsightError, ValueError):
    """A query that cannot be answered as asked."""
