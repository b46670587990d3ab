"""A writer process for the concurrency and crash tests.

Run as ``python -m tests.reliability_writer DB_URL NETWORK``. The writer
opens one ``Ledger``, prints ``ready``, then reads the path of a plan file
from each line of standard input until it ends. A plan is a JSON list of
commands, each ``{"request_id", "op", "id"}`` with ``op`` one of ``create``
and ``destroy``. The writer runs a plan in order and prints one line per
command, flushed at once:

- ``ack REQUEST_ID JSON`` after a command returned (the result as JSON),
- ``refused REQUEST_ID CODE MESSAGE`` after a model refusal,
- ``done JSON`` at the end of a plan, with the number of commands, of
  version conflicts retried, of retries logged, and the seconds spent.

A line is printed only after the command returned, so an ``ack`` line means
the command is committed.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from ledger import errors
from ledger.aggregate import CommandContext
from ledger.application import Ledger
from ledger.storage import environment_for


class RetryCounter(logging.Handler):
    """Counts the application's log records about retried appends."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "retrying in" in record.getMessage():
            self.count += 1


def run_command(ledger: Ledger, network: str, command: dict[str, Any]) -> Any:
    """Run one planned command and return its result in JSON form."""
    context = CommandContext(actor="reliability-writer", request_id=command["request_id"])
    if command["op"] == "create":
        container = ledger.create_container(network, context, command["id"])
        return {"id": container.container_id, "ip": str(container.ip), "gateway": str(container.gw)}
    released = ledger.destroy_container(network, command["id"], context)
    return {"id": command["id"], "released": [str(address) for address in released]}


def emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def run_plan(ledger: Ledger, network: str, plan_file: str, counter: RetryCounter) -> None:
    """Run the commands of one plan file and print their outcomes."""
    with open(plan_file, encoding="utf-8") as plan_stream:
        plan = json.load(plan_stream)
    ledger.conflict_retries = counter.count = 0
    started = time.monotonic()
    for command in plan:
        try:
            result = run_command(ledger, network, command)
        except errors.Refused as error:
            emit(f"refused {command['request_id']} {error.code} {error.message}")
            continue
        emit(f"ack {command['request_id']} {json.dumps(result)}")
    stats = {
        "commands": len(plan),
        "conflict_retries": ledger.conflict_retries,
        "retries_logged": counter.count,
        "seconds": round(time.monotonic() - started, 3),
    }
    emit("done " + json.dumps(stats))


def main(url: str, network: str) -> int:
    counter = RetryCounter()
    application_log = logging.getLogger("ledger.application")
    application_log.addHandler(counter)
    application_log.setLevel(logging.INFO)
    ledger = Ledger(env=environment_for(url))
    emit("ready")
    for line in sys.stdin:
        run_plan(ledger, network, line.strip(), counter)
    ledger.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
