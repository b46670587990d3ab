"""Migrate the data directory of CNI's ``host-local`` IPAM plugin into the ledger.

host-local keeps one directory per network (``/var/lib/cni/networks/NAME``
by default) with one file per reserved address, named by the address. A file
contains ``CONTAINERID\\r\\nIFNAME`` (checked with plugins 1.1.1), and files
written by older versions contain only the container id. The import skips
the directory's ``lock`` and ``last_reserved_ip.N`` files.

host-local gives every container of a range the same gateway, but the
ledger's model gives each container a gateway of its own from the pool. So
the import allocates a fresh gateway from the pool for each container: the
lowest (or next round-robin) free address that no reservation of the
import uses. Its ledger id is the one ``netledger-cni`` uses (``cni.ids``), so the
runtime's later DEL finds it. All containers are recorded in one atomic
append, and if any entry breaks the model nothing is written.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from cni.ids import attachment_id
from ledger import errors
from ledger.addresses import IPAddress
from ledger.aggregate import CommandContext
from ledger.model import ContainerNet
from ledger.text import counted

if TYPE_CHECKING:
    from ledger.application import Ledger

LOCK_FILE = "lock"
LAST_RESERVED_PREFIX = "last_reserved_ip."


class ImportRefused(errors.Refused):
    """Some host-local entries cannot be recorded; nothing was written."""

    code = "import-refused"


@dataclass(frozen=True)
class Reservation:
    """One host-local reservation: an address held by a container's interface."""

    address: IPAddress
    container_id: str
    ifname: str
    file: str

    @property
    def ledger_id(self) -> str:
        return attachment_id(self.container_id, self.ifname)


def read_store(directory: Path, default_ifname: Optional[str] = None) -> tuple[list[Reservation], list[str]]:
    """Read the reservations of a host-local network directory.

    Returns the reservations, sorted by address, and a list of problems
    (a file not named by an address, a file without an interface name when
    ``default_ifname`` is None, an attachment holding two addresses). The
    reservations of an attachment with two addresses are left out, because
    their problem is already listed.
    """
    if not directory.is_dir():
        raise errors.InvalidInput(
            f"{directory} is not a directory; give a host-local network directory such as /var/lib/cni/networks/NAME"
        )
    reservations: list[Reservation] = []
    problems: list[str] = []
    for path in sorted(directory.iterdir()):
        if path.name == LOCK_FILE or path.name.startswith(LAST_RESERVED_PREFIX) or path.is_dir():
            continue
        try:
            reservations.append(_read_reservation(path, default_ifname))
        except errors.InvalidInput as error:
            problems.append(error.message)
    reservations.sort(key=lambda item: (item.address.version, int(item.address)))
    shared = _shared_attachments(reservations)
    problems.extend(shared.values())
    return [item for item in reservations if item.ledger_id not in shared], problems


def _read_reservation(path: Path, default_ifname: Optional[str]) -> Reservation:
    # host-local on Windows writes IPv6 file names with '_' in place of ':'.
    name = path.name.replace("_", ":")
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        raise errors.InvalidInput(f"{path.name}: the file name is not an IP address") from None
    try:
        lines = path.read_text(encoding="utf-8").strip().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise errors.InvalidInput(f"{path.name}: cannot read it: {error}") from None
    container_id = lines[0].strip() if lines else ""
    ifname = lines[1].strip() if len(lines) > 1 else (default_ifname or "")
    if not container_id:
        raise errors.InvalidInput(f"{path.name}: the file contains no container id")
    if not ifname:
        raise errors.InvalidInput(
            f"{path.name}: the file contains container {container_id} but no interface name "
            "(older host-local versions wrote none); pass --default-ifname, usually eth0"
        )
    return Reservation(address, container_id, ifname, path.name)


def _shared_attachments(reservations: list[Reservation]) -> dict[str, str]:
    """Return a problem for each attachment with more than one address, by ledger id."""
    by_id: dict[str, list[Reservation]] = {}
    for item in reservations:
        by_id.setdefault(item.ledger_id, []).append(item)
    return {
        ledger_id: f"container {items[0].container_id} on {items[0].ifname} has "
        f"{', '.join(str(item.address) for item in items)}; the ledger gives an attachment one address"
        for ledger_id, items in by_id.items()
        if len(items) > 1
    }


def import_reservations(
    ledger: Ledger, network_name: str, reservations: list[Reservation], problems: list[str], context: CommandContext
) -> list[ContainerNet]:
    """Record every reservation as a pooled container, or refuse them all and write nothing."""
    from eventsourcing.persistence import IntegrityError

    network = ledger.network(network_name)
    net = network.net
    # An address another reservation will take must not become a gateway first.
    pending = {int(item.address) for item in reservations if item.address.version == net.version}
    refusals = list(problems)
    created: list[ContainerNet] = []
    for item in reservations:
        pending.discard(int(item.address))
        try:
            planned = net.plan_create_with_ip(item.ledger_id, item.address)
            (gateway,) = net.choose(1, exclude=frozenset(pending | {int(item.address)}))
            container = replace(planned, gw=net.address(gateway))
            network.create_container(container, context)
            created.append(container)
        except errors.AddressNotInPool:
            # The model's message suggests --subnet, which this command does not have.
            refusals.append(
                f"{item.file} ({item.container_id} on {item.ifname}): address {item.address} is not in the pool "
                f"of network {network_name}; only pool addresses can be imported, so import it into a network "
                "whose pool contains it"
            )
        except errors.LedgerError as error:
            refusals.append(f"{item.file} ({item.container_id} on {item.ifname}): {error.message}")
    if refusals:
        listing = "\n".join(f"  {line}" for line in refusals)
        raise ImportRefused(
            f"import into network {network_name} refused, nothing written; {counted(len(refusals), 'problem')}:\n"
            f"{listing}"
        )
    if created:
        try:
            ledger.save(network)
        except IntegrityError:
            raise errors.ConcurrentUpdate(
                f"network {network_name} changed during the import; nothing was written, run the import again"
            ) from None
    return created
