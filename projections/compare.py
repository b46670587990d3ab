"""Check the stored read models against a fresh replay of the events."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Optional, Union

from ledger import errors
from ledger.aggregate import NetworkCreated, network_id
from projections import free, history, occupancy
from projections.replay import ReplayedNetwork, first_difference
from projections.runner import ReadModels
from projections.store import Session

if TYPE_CHECKING:
    from ledger.application import Ledger

EXPORTS: dict[str, Callable[[Session, Optional[str]], dict[str, Any]]] = {
    free.SCHEMA.name: free.export,
    occupancy.SCHEMA.name: occupancy.export,
    history.SCHEMA.name: history.export,
}
PAGE_SIZE = 500


def compare_with_replay(ledger_or_url: Union[Ledger, str], network: Optional[str] = None) -> Optional[str]:
    """Return a sentence naming the first difference between a read model and a replay, or None.

    The read models are caught up first. Each is then compared with a
    replay of the log up to its own position, read in the same snapshot as
    its rows, so events appended meanwhile cause no false difference.
    ``network`` limits the comparison to one network.
    """
    if not isinstance(ledger_or_url, str):
        return _compare(ledger_or_url, network)
    from ledger.application import Ledger
    from ledger.storage import environment_for

    ledger = Ledger(env=environment_for(ledger_or_url))
    try:
        return _compare(ledger, network)
    finally:
        ledger.close()


def _compare(ledger: Ledger, network: Optional[str]) -> Optional[str]:
    models = ReadModels(ledger)
    models.catch_up()
    return compare_stored(models, network)


def compare_stored(models: ReadModels, network: Optional[str] = None) -> Optional[str]:
    """Compare each read model as stored now, at its own position, with a replay; catch nothing up."""
    selected_id = None if network is None else str(network_id(network))
    stored = {name: models.read(name, partial(export, selected_id=selected_id)) for name, export in EXPORTS.items()}
    positions = sorted({position for position, _ in stored.values()})
    replayed = _replay_at(models.ledger, positions, selected_id)
    if selected_id is not None and all(selected_id not in replayed[position] for position in positions):
        raise errors.NetworkNotFound(f"network {network} not found; 'netledger network list' shows the networks")
    for name, (position, export) in stored.items():
        expected = {key: exports[name] for key, exports in replayed[position].items()}
        difference = first_difference(_by_name(export), _by_name(expected), "network")
        if difference is not None:
            return f"read model {name} at position {position} differs from a replay of the log: {difference}"
    return None


def _by_name(networks: dict[str, Any]) -> dict[str, Any]:
    """Key networks by name, or by id for rows whose network has no name."""
    return {entry.get("name") or f"with id {key}": entry for key, entry in networks.items()}


def _replay_at(
    ledger: Ledger, positions: list[int], selected_id: Optional[str]
) -> dict[int, dict[str, dict[str, Any]]]:
    """Replay the log and return the exports of every network, or one, as they were at each position."""
    networks: dict[str, ReplayedNetwork] = {}
    snapshots: dict[int, dict[str, dict[str, Any]]] = {}
    start = 0
    for target in positions:
        while start < target:
            page = ledger.recorder.select_notifications(start=start, limit=PAGE_SIZE, stop=target, inclusive_of_start=False)
            if not page:
                break
            for notification in page:
                # Skipping before decoding keeps a one-network check cheap in a busy log.
                if selected_id is None or str(notification.originator_id) == selected_id:
                    _replay_one(networks, ledger.mapper.to_domain_event(notification), notification.id)
            start = page[-1].id
        snapshots[target] = {key: replayed.exports() for key, replayed in networks.items()}
        start = max(start, target)
    return snapshots


def _replay_one(networks: dict[str, ReplayedNetwork], event: Any, position: int) -> None:
    key = str(event.originator_id)
    if isinstance(event, NetworkCreated):
        networks[key] = ReplayedNetwork(event)
    elif key in networks:
        networks[key].apply(event, position)
