"""Errors raised by the ledger.

Two kinds matter to callers. ``InvalidInput`` means the request itself is
malformed (a bad address, a wrong URL) and maps to exit status 2.
``Refused`` means the request was well formed but the model's preconditions
do not hold (the address is taken, the pool is exhausted) and maps to exit
status 1. Neither writes anything.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base class for every error the ledger reports to a user."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(LedgerError):
    """A value given by the caller cannot be parsed or is out of range."""

    exit_code = 2


class StorageError(LedgerError):
    """The database could not be reached or failed while answering."""

    exit_code = 3


class TurnsUnavailable(StorageError):
    """The database lacks the function with which writers of a network take turns, so they append without turns."""


class Refused(LedgerError):
    """A command whose precondition in the model does not hold.

    ``code`` is a stable, machine-readable name for the precondition that
    failed, so scripts and tests need not parse the message.
    """

    code = "refused"


class NetworkExists(Refused):
    code = "network-exists"


class NetworkNotFound(Refused):
    code = "network-not-found"


class ContainerExists(Refused):
    code = "container-exists"


class ContainerNotFound(Refused):
    code = "container-not-found"


class AddressTaken(Refused):
    code = "address-taken"


class AddressNotInPool(Refused):
    code = "address-not-in-pool"


class PoolExhausted(Refused):
    code = "pool-exhausted"


class SubnetOverlapsPool(Refused):
    code = "subnet-overlaps-pool"


class SubnetConflict(Refused):
    code = "subnet-conflict"


class AddressHeld(Refused):
    code = "address-held"


class ConcurrentUpdate(Refused):
    """Other writers kept changing the network until the retries ran out."""

    code = "concurrent-update"


class AddressNotInSubnet(Refused):
    code = "address-not-in-subnet"


class AddressReserved(Refused):
    code = "address-reserved"


class RequestIdReused(Refused):
    """A request id the network already recorded, given with another command or arguments."""

    code = "request-id-reused"
