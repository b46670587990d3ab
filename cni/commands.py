"""ADD, DEL, CHECK, GC and STATUS, run against the ledger.

Every event these commands record names the actor "cni" and a request id
that starts with the command and the attachment's ledger id (``cni.ids``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Optional

from cni import errors
from cni.errors import CniError
from cni.ids import attachment_id, request_id
from cni.inputs import prev_result_addresses, requested_address, valid_attachment_ids
from cni.request import IpamConfig, Request
from cni.result import build_result
from ledger import errors as ledger_errors
from ledger.addresses import IPAddress
from ledger.aggregate import CommandContext
from ledger.model import ContainerNet
from ledger.text import counted

if TYPE_CHECKING:
    from ledger.application import Ledger

log = logging.getLogger("netledger.cni")

ACTOR = "cni"
# An ADD from the pool takes an address and a gateway, so STATUS reports the
# plugin unavailable when fewer than two addresses are free.
ADDRESSES_PER_POOLED_ADD = 2


@contextmanager
def open_ledger(url: str, unavailable_code: int = errors.TRY_AGAIN_LATER) -> Iterator[Ledger]:
    """Open the event store at ``url``, turning database failures into ``unavailable_code``."""
    from eventsourcing.persistence import PersistenceError

    from ledger.application import Ledger
    from ledger.storage import environment_for, redact

    try:
        env = environment_for(url)
    except ledger_errors.InvalidInput as error:
        raise CniError(errors.INVALID_CONFIG, "invalid event store URL", error.message) from None
    try:
        ledger = Ledger(env=env)
    except (PersistenceError, OSError) as error:
        raise CniError(unavailable_code, "the ledger is unreachable", f"{redact(url)}: {_first_line(error)}") from None
    try:
        yield ledger
    except PersistenceError as error:
        raise CniError(unavailable_code, "the ledger failed", f"{redact(url)}: {_first_line(error)}") from None
    finally:
        ledger.close()


def _first_line(error: BaseException) -> str:
    from ledger.storage import redact

    lines = str(error).strip().splitlines()
    line = lines[0] if lines else type(error).__name__
    # Driver messages can echo the connection string, which may contain a password.
    return " ".join(redact(word) if "://" in word else word for word in line.split())


def ledger_error(command: str, error: ledger_errors.LedgerError) -> CniError:
    """Translate a ledger error into the CNI error a runtime can act on."""
    if isinstance(error, ledger_errors.InvalidInput):
        return CniError(errors.INVALID_CONFIG, f"{command} request is invalid", error.message)
    if isinstance(error, ledger_errors.NetworkNotFound):
        return CniError(errors.INVALID_CONFIG, "ipam.network is not in the ledger", error.message)
    if isinstance(error, (ledger_errors.ConcurrentUpdate, ledger_errors.StorageError)):
        return CniError(errors.TRY_AGAIN_LATER, "the ledger is busy or unreachable", error.message)
    code = getattr(error, "code", "refused")
    return CniError(errors.LEDGER_REFUSED, f"the ledger refused {command} ({code})", error.message)


def context_for(command: str, ledger_id: str) -> CommandContext:
    return CommandContext(actor=ACTOR, request_id=request_id(command, ledger_id))


def add(request: Request) -> dict[str, Any]:
    """Create the attachment's container in the ledger and return the IPAM result.

    A runtime may retry an ADD whose result it lost. When the container
    already exists with what this request names (the same address, the
    same subnet or the pool), its existing result is returned unchanged.
    """
    ipam = _ipam(request)
    ledger_id = attachment_id(request.container_id, request.ifname)
    address = requested_address(request)
    if ipam.subnet is not None and address is None:
        raise CniError(
            errors.INVALID_CONFIG,
            "ipam.subnet needs an address",
            f"a container in special subnet {ipam.subnet} needs its address: pass IP=... in CNI_ARGS, "
            "runtimeConfig.ips or args.cni.ips",
        )
    with open_ledger(ipam.db_url) as ledger:
        try:
            container = ledger.create_container(
                ipam.network, context_for("ADD", ledger_id), ledger_id, address, ipam.subnet
            )
            log.info("ADD %s in network %s: ip %s gateway %s", ledger_id, ipam.network, container.ip, container.gw)
        except ledger_errors.ContainerExists as error:
            container = _existing_if_same(ledger, ipam, ledger_id, address, error)
        except ledger_errors.LedgerError as error:
            raise ledger_error("ADD", error) from None
    return build_result(container, ipam, request.cni_version)


def _existing_if_same(
    ledger: Ledger,
    ipam: IpamConfig,
    ledger_id: str,
    address: Optional[IPAddress],
    error: ledger_errors.ContainerExists,
) -> ContainerNet:
    try:
        existing = ledger.network(ipam.network).net.container(ledger_id)
    except ledger_errors.LedgerError as reload_error:
        raise ledger_error("ADD", reload_error) from None
    same_place = existing.subnet == ipam.subnet if ipam.subnet is not None else existing.pooled
    if same_place and (address is None or existing.ip == address):
        log.info("ADD %s in network %s repeated: returning ip %s", ledger_id, ipam.network, existing.ip)
        return existing
    raise ledger_error("ADD", error)


def delete(request: Request) -> None:
    """Destroy the attachment's container, treating an unknown container or network as deleted."""
    ipam = _ipam(request)
    ledger_id = attachment_id(request.container_id, request.ifname)
    with open_ledger(ipam.db_url) as ledger:
        try:
            released = ledger.destroy_container(ipam.network, ledger_id, context_for("DEL", ledger_id))
        except (ledger_errors.ContainerNotFound, ledger_errors.NetworkNotFound):
            log.info("DEL %s in network %s: nothing recorded, nothing to release", ledger_id, ipam.network)
            return
        except ledger_errors.LedgerError as error:
            raise ledger_error("DEL", error) from None
    log.info("DEL %s in network %s: released %s", ledger_id, ipam.network, ", ".join(map(str, released)))


def check(request: Request) -> None:
    """Check that the ledger records the attachment with the address and gateway of prevResult."""
    ipam = _ipam(request)
    ledger_id = attachment_id(request.container_id, request.ifname)
    expected = prev_result_addresses(request)
    with open_ledger(ipam.db_url) as ledger:
        try:
            container = ledger.network(ipam.network).net.container(ledger_id)
        except ledger_errors.ContainerNotFound as error:
            raise CniError(errors.CHECK_FAILED, "the ledger has no record of this attachment", error.message) from None
        except ledger_errors.LedgerError as error:
            raise ledger_error("CHECK", error) from None
    matching = [gateway for address, gateway in expected if address == container.ip]
    if not matching:
        shown = ", ".join(str(address) for address, _ in expected) or "no address"
        raise CniError(
            errors.CHECK_FAILED,
            "prevResult does not match the ledger",
            f"the ledger gives container {ledger_id} ip {container.ip} but prevResult has {shown}",
        )
    if matching[0] is not None and matching[0] != container.gw:
        raise CniError(
            errors.CHECK_FAILED,
            "prevResult does not match the ledger",
            f"the ledger gives container {ledger_id} gateway {container.gw} but prevResult has {matching[0]}",
        )


def garbage_collect(request: Request) -> None:
    """Destroy every container of the network whose attachment is not in the valid list.

    Each destroy is its own transaction, so one failure does not keep the
    others from being collected; the failures are reported together.
    """
    ipam = _ipam(request)
    keep = valid_attachment_ids(request)
    failures: list[str] = []
    with open_ledger(ipam.db_url) as ledger:
        try:
            stale = sorted(set(ledger.network(ipam.network).net.containers) - keep)
        except ledger_errors.NetworkNotFound:
            return
        for ledger_id in stale:
            failure = _collect_one(ledger, ipam.network, ledger_id)
            if failure:
                failures.append(failure)
    if failures:
        raise CniError(errors.TRY_AGAIN_LATER, f"GC left {counted(len(failures), 'container')}", "; ".join(failures))


def _collect_one(ledger: Ledger, network: str, ledger_id: str) -> Optional[str]:
    try:
        released = ledger.destroy_container(network, ledger_id, context_for("GC", ledger_id))
    except ledger_errors.ContainerNotFound:
        return None
    except ledger_errors.LedgerError as error:
        log.warning("GC of %s in network %s failed: %s", ledger_id, network, error.message)
        return f"{ledger_id}: {error.message}"
    log.info("GC %s in network %s: released %s", ledger_id, network, ", ".join(map(str, released)))
    return None


def status(request: Request) -> None:
    """Succeed when the ledger is reachable and the network can serve an ADD; else code 50."""
    ipam = _ipam(request)
    needed = 1 if ipam.subnet is not None else ADDRESSES_PER_POOLED_ADD
    with open_ledger(ipam.db_url, errors.PLUGIN_NOT_AVAILABLE) as ledger:
        try:
            pool = ledger.network(ipam.network).net.pool
        except ledger_errors.LedgerError as error:
            raise CniError(errors.PLUGIN_NOT_AVAILABLE, "the plugin cannot serve ADD", error.message) from None
    if pool.free_count < needed:
        raise CniError(
            errors.PLUGIN_NOT_AVAILABLE,
            "the plugin cannot serve ADD",
            f"the pool of network {ipam.network} has {pool.free_count} of "
            f"{counted(pool.size, 'address', 'addresses')} free; "
            f"an ADD needs {needed}",
        )


def _ipam(request: Request) -> IpamConfig:
    assert request.ipam is not None, "read_request always sets ipam"
    return request.ipam
