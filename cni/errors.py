"""The CNI error result: a well-known or plugin-specific code, a message and details."""

from __future__ import annotations

from typing import Any

# Well-known error codes of the CNI specification (0-99 are reserved).
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
PLUGIN_NOT_AVAILABLE = 50

# Codes of this plugin (the specification leaves 100 and above to plugins).
LEDGER_REFUSED = 100
CHECK_FAILED = 101
INTERNAL_ERROR = 999


class CniError(Exception):
    """An error the plugin prints as the specification's error JSON on standard output.

    ``msg`` is a short summary and ``details`` the full explanation with the
    values involved, as the specification describes the two fields.
    """

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(f"{msg}; {details}" if details else msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_json(self, cni_version: str) -> dict[str, Any]:
        """Return the error as the specification's error object."""
        body: dict[str, Any] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            body["details"] = self.details
        return body
