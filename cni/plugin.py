"""The ``netledger-cni`` executable: the CNI IPAM plugin protocol around ``cni.commands``.

A runtime (or a main plugin such as ``ptp``) runs this program with
CNI_COMMAND and the other CNI_* variables set and the network configuration
on standard input. ADD prints the result JSON; DEL, CHECK, GC and STATUS
print nothing; VERSION prints the supported versions. Any failure prints
the specification's error JSON on standard output and exits with status 1.
Logs go to standard error; ``NETLEDGER_LOG`` sets their level (default
WARNING).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from typing import Any, Optional, TextIO

from cni import errors
from cni.errors import CniError
from cni.request import LATEST_VERSION, SUPPORTED_VERSIONS, decode_config, read_command, read_request

log = logging.getLogger("netledger.cni")


def version_result(stdin_text: str) -> dict[str, Any]:
    """Return the VERSION result, in the configuration's cniVersion when it is one this plugin speaks."""
    version = LATEST_VERSION
    if stdin_text.strip():
        config = decode_config(stdin_text)
        if config.get("cniVersion") in SUPPORTED_VERSIONS:
            version = config["cniVersion"]
    return {"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)}


def run(environ: Mapping[str, str], stdin_text: str) -> Optional[dict[str, Any]]:
    """Run one invocation and return what to print on success (None prints nothing)."""
    from cni import commands

    command = read_command(environ)
    if command == "VERSION":
        return version_result(stdin_text)
    request = read_request(command, environ, decode_config(stdin_text))
    handlers = {
        "ADD": commands.add,
        "DEL": commands.delete,
        "CHECK": commands.check,
        "GC": commands.garbage_collect,
        "STATUS": commands.status,
    }
    return handlers[command](request)


def error_version(stdin_text: str) -> str:
    """Return the cniVersion to write an error in: the configuration's if supported, else the latest."""
    try:
        version = json.loads(stdin_text).get("cniVersion")
    except (ValueError, AttributeError):
        return LATEST_VERSION
    return version if version in SUPPORTED_VERSIONS else LATEST_VERSION


def execute(environ: Mapping[str, str], stdin: TextIO, stdout: TextIO) -> int:
    """Run the plugin on the given streams and return its exit status."""
    try:
        stdin_text = stdin.read()
    except (OSError, UnicodeDecodeError) as error:
        return _print_error(stdout, CniError(errors.IO_FAILURE, "cannot read the network configuration", str(error)), LATEST_VERSION)
    try:
        output = run(environ, stdin_text)
    except CniError as error:
        log.warning("%s failed: %s", environ.get("CNI_COMMAND", "?"), error)
        return _print_error(stdout, error, error_version(stdin_text))
    except Exception as error:  # noqa: BLE001 - a runtime must get the error JSON, whatever broke
        log.exception("%s failed unexpectedly", environ.get("CNI_COMMAND", "?"))
        internal = CniError(errors.INTERNAL_ERROR, "internal error in netledger-cni", f"{type(error).__name__}: {error}")
        return _print_error(stdout, internal, error_version(stdin_text))
    if output is not None:
        stdout.write(json.dumps(output, indent=2) + "\n")
    return 0


def _print_error(stdout: TextIO, error: CniError, version: str) -> int:
    stdout.write(json.dumps(error.to_json(version), indent=2) + "\n")
    return 1


def main() -> None:
    """Entry point of the ``netledger-cni`` executable."""
    level = os.environ.get("NETLEDGER_LOG", "WARNING").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.WARNING),
        stream=sys.stderr,
        format="netledger-cni %(levelname)s: %(message)s",
    )
    sys.exit(execute(os.environ, sys.stdin, sys.stdout))


if __name__ == "__main__":
    main()
