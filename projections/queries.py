"""Questions answered from the read models, each after catching them up.

Every query first applies the events stored so far, so its result
includes the effect of any command that finished before it started.
"""

from __future__ import annotations

from typing import Optional

from ledger import errors
from ledger.addresses import IPAddress
from ledger.aggregate import network_id
from projections import free, history, occupancy
from projections.runner import ReadModels
from projections.store import Session
from projections.values import address_key


def _not_found(name: str) -> errors.NetworkNotFound:
    return errors.NetworkNotFound(f"network {name} not found; 'netledger network list' shows the networks")


def free_space(models: ReadModels, network: str, limit: Optional[int]) -> free.FreeSpace:
    """Return a network's free count and its first ``limit`` free ranges (all when None)."""
    models.catch_up()
    _, space = models.read(free.SCHEMA.name, lambda session: free.free_space(session, str(network_id(network)), limit))
    if space is None:
        raise _not_found(network)
    return space


def occupancy_of(models: ReadModels, network: Optional[str]) -> list[occupancy.NetworkOccupancy]:
    """Return the occupancy of one network, or of all networks when ``network`` is None."""
    models.catch_up()
    selected_id = None if network is None else str(network_id(network))
    _, result = models.read(occupancy.SCHEMA.name, lambda session: occupancy.occupancy(session, selected_id))
    if network is not None and not result:
        raise _not_found(network)
    return result


def address_tenancies(
    models: ReadModels, address: IPAddress, network: Optional[str], at: Optional[str]
) -> list[history.Tenancy]:
    """Return who held an address: over its whole history, or at the stored-form time ``at``."""
    models.catch_up()
    selected_id = None if network is None else str(network_id(network))

    def query(session: Session) -> list[history.Tenancy] | None:
        if selected_id is not None and selected_id not in history.network_names(session):
            return None
        return history.tenancies(session, address_key(int(address)), address.version, selected_id, at)

    _, result = models.read(history.SCHEMA.name, query)
    if result is None:
        raise _not_found(str(network))
    return result


def container_history(models: ReadModels, container_id: str, network: Optional[str]) -> list[history.ContainerLife]:
    """Return every life of a container id, oldest first; raise if it never existed."""
    models.catch_up()
    selected_id = None if network is None else str(network_id(network))

    def query(session: Session) -> list[history.ContainerLife] | None:
        if selected_id is not None and selected_id not in history.network_names(session):
            return None
        return history.container_lives(session, container_id, selected_id)

    _, lives = models.read(history.SCHEMA.name, query)
    if lives is None:
        raise _not_found(str(network))
    if not lives:
        where = f" in network {network}" if network is not None else ""
        raise errors.ContainerNotFound(
            f"container {container_id} never existed{where}; 'netledger container list NETWORK' shows live ones"
        )
    return lives
