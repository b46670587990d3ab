"""The second process of a rebuild, which stages some read models and replaces them.

``projections.rebuild`` starts it as ``python -m projections.rebuild_helper
HEAD NAME...`` and writes the ledger's settings to its standard input as a
JSON object, so that a password in them does not show in the process list.
It exits with status 0 once the named read models are replaced with the
log up to position HEAD. Run as a module of its own, it imports only what
staging needs, not the program that started the rebuild.
"""

from __future__ import annotations

import json
import sys


def main(arguments: list[str]) -> int:
    head, names = int(arguments[0]), arguments[1:]
    env = json.load(sys.stdin)

    from ledger.application import Ledger
    from projections.rebuild import rebuild_here
    from projections.runner import ReadModels

    ledger = Ledger(env=env)
    try:
        rebuild_here(ReadModels(ledger), names, head, None)
    finally:
        ledger.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
