"""The same short history works on SQLite and on PostgreSQL."""

import uuid

from ledger.addresses import parse_range
from ledger.aggregate import CommandContext
from ledger.application import Ledger
from ledger.storage import environment_for


def test_create_and_reload_on_each_store(db_url: str) -> None:
    context = CommandContext(actor="test", request_id=str(uuid.uuid4()))
    ledger = Ledger(env=environment_for(db_url))
    ledger.create_network("web", [parse_range("10.0.0.0/24")], [], "lowest", context)
    created = ledger.create_container("web", context, "a1")
    ledger.close()

    reopened = Ledger(env=environment_for(db_url))
    net = reopened.network("web").net
    assert str(created.ip) == "10.0.0.1"
    assert str(net.containers["a1"].gw) == "10.0.0.2"
    assert reopened.event_count() == 4
    reopened.close()
