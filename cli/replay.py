"""``netledger replay`` and ``diff``: a network as it was at a point, and what changed between two points.

A point is a position (as ``netledger events`` prints it) or an ISO 8601
time. ``--position N`` applies the network's events stored at positions up
to N; positions order the events of every network together. A point inside
one command's events gives a state that was never committed, and ``replay``
says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from cli.common import MAX_POSITION, DbOption, JsonOption, fail, guard_input, log, open_ledger, print_json, print_table
from cli.history import TIME_HELP

if TYPE_CHECKING:
    from ledger.replay import NetworkDiff, NetworkState, Point, SplitCommand

POINT_HELP = "a position number (as 'netledger events' prints it) or an ISO 8601 time (without an offset, UTC)"
NetworkArgument = Annotated[str, typer.Argument(help="Network name.")]


def replay(
    network: NetworkArgument,
    at: Annotated[Optional[str], typer.Option("--at", help=f"The time to rebuild the network at: {TIME_HELP}.")] = None,
    position: Annotated[
        Optional[int],
        typer.Option(
            "--position",
            min=1,
            max=MAX_POSITION,
            help="The position (as 'netledger events' prints it) to rebuild the network at.",
        ),
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a network as it was at a time or position, rebuilt from its events.

    --position N applies the network's events stored at positions up to N
    (positions order the events of every network together). --at applies
    its events up to the first one recorded after that time.

    One command writes up to three events, committed together and sharing
    its request id. A point between two of them shows a state that no
    reader ever saw: the output then adds a note naming the command and the
    positions that show the state before and after it (in --json,
    "split_command").

    Example: netledger replay web --position 120
    """
    from ledger.addresses import parse_network_name
    from ledger.replay import Point, parse_time
    from ledger.text import counted

    guard_input(lambda: parse_network_name(network))
    if (at is None) == (position is None):
        fail("give exactly one of --at TIME and --position N", 2)
    point = Point(position=position) if position is not None else Point(time=guard_input(lambda: parse_time(at, "--at")))
    with open_ledger(db) as ledger:
        state = _replay_existing(ledger, network, point)
        log_end = ledger.recorder.max_notification_id() or 0
    log.info("replayed network %s at %s: version %d", network, point, state.version)
    summary = _state_summary(state)
    summary["past_log_end"] = position is not None and position > log_end
    if as_json:
        print_json(summary)
        return
    typer.echo(
        f"network {network} at {point}: version {summary['version']}, last event at position "
        f"{summary['last_position']} ({summary['last_timestamp']})"
    )
    if summary["past_log_end"]:
        typer.echo(
            f"note: position {position} is past the last stored event (position {log_end}), "
            "so this is the network's current state"
        )
    if state.split is not None:
        typer.echo(_split_note(point, state.split))
    pool_size = counted(summary["pool_size"], "address", "addresses")
    typer.echo(
        f"allocated {summary['allocated_count']} of {pool_size} "
        f"({', '.join(summary['allocated']) or 'none'}); {summary['free']} free"
    )
    print_table(
        f"Containers of {network} ({len(summary['containers'])})",
        ["id", "ip", "subnet", "gateway", "kind"],
        [list(row.values()) for row in summary["containers"]],
    )


def _replay_existing(ledger: Any, network: str, point: Any) -> NetworkState:
    from ledger.errors import NetworkNotFound
    from ledger.replay import replay as replay_network

    state = replay_network(ledger, network, point)
    if state.net is None:
        raise NetworkNotFound(
            f"network {network} did not exist yet at {point}; "
            f"'netledger events --network {network} --limit 1' shows when it was created"
        )
    return state


def _state_summary(state: NetworkState) -> dict[str, Any]:
    from cli.container import container_row
    from ledger.replay import format_ranges

    net = state.net
    assert net is not None
    return {
        "network": state.name,
        "at": str(state.point),
        "version": state.version,
        "last_position": state.position,
        "last_timestamp": state.timestamp.isoformat() if state.timestamp else None,
        "containers": [container_row(c) for c in sorted(net.containers.values(), key=lambda c: c.container_id)],
        "allocated": format_ranges(net.pool.alloc, net.pool.version),
        "allocated_count": net.pool.allocated_count,
        "free": net.pool.free_count,
        "pool_size": net.pool.size,
        "split_command": None if state.split is None else {
            "request_id": state.split.request_id,
            "first_position": state.split.first_position,
            "last_position": state.split.last_position,
            "applied_events": state.split.applied,
            "events": state.split.events,
        },
    }


def _split_note(point: Point, split: SplitCommand) -> str:
    """Return the note that a point falls inside one command's events."""
    applied = f"{split.applied} of its {split.events} events {'is' if split.applied == 1 else 'are'} applied"
    return (
        f"note: {point} falls inside request {split.request_id} (positions {split.first_position} to "
        f"{split.last_position}): {applied}, a state no reader saw, because a command's events are committed "
        f"together.\n      --position {split.first_position - 1} shows the state before that command, "
        f"--position {split.last_position} the state after it."
    )


def diff(
    network: NetworkArgument,
    start: Annotated[str, typer.Argument(metavar="FROM", help=f"The earlier point: {POINT_HELP}.")],
    end: Annotated[str, typer.Argument(metavar="TO", help=f"The later point: {POINT_HELP}.")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the containers and allocated addresses a network gained and lost from FROM to TO.

    A network not created yet at FROM counts as empty. A container destroyed
    and created again with other addresses is listed as both lost and gained.

    Example: netledger diff web 2024-05-01T00:00Z 2024-05-02T00:00Z
    """
    from ledger.addresses import parse_network_name
    from ledger.errors import InvalidInput
    from ledger.history import require_network
    from ledger.replay import diff as diff_states
    from ledger.replay import parse_point
    from ledger.replay import replay as replay_network

    guard_input(lambda: parse_network_name(network))
    before_point = guard_input(lambda: parse_point(start, "FROM"))
    after_point = guard_input(lambda: parse_point(end, "TO"))
    if _comes_after(before_point, after_point):
        fail(_order_message(start, end), 2)
    with open_ledger(db) as ledger:
        require_network(ledger, network)
        before = replay_network(ledger, network, before_point)
        after = replay_network(ledger, network, after_point)
        # A position and a time cannot be compared before the replay, but the
        # states can: each is a prefix of the network's stream.
        if before.version > after.version:
            raise InvalidInput(_order_message(start, end))
    log.info(
        "compared network %s from %s (version %d) to %s (version %d)",
        network, before_point, before.version, after_point, after.version,
    )
    result = _diff_summary(network, before, after, diff_states(before, after))
    if as_json:
        print_json(result)
        return
    _print_diff(result)


def _comes_after(first: Point, second: Point) -> bool:
    """Return whether ``first`` is later than ``second``, when both are positions or both are times."""
    if first.position is not None and second.position is not None:
        return first.position > second.position
    if first.time is not None and second.time is not None:
        return first.time > second.time
    return False


def _order_message(start: str, end: str) -> str:
    return f"invalid range: FROM {start} is after TO {end}; FROM must not be after TO, so give the earlier point first"


def _diff_summary(network: str, before: NetworkState, after: NetworkState, change: NetworkDiff) -> dict[str, Any]:
    from cli.container import container_row
    from ledger.replay import format_ranges

    known = after.net or before.net
    # With no state at either point both sets are empty, so the family does not matter.
    version = known.pool.version if known is not None else 4
    return {
        "network": network,
        "from": {"at": str(before.point), "version": before.version, "last_position": before.position},
        "to": {"at": str(after.point), "version": after.version, "last_position": after.position},
        "containers_gained": [container_row(c) for c in change.containers_gained],
        "containers_lost": [container_row(c) for c in change.containers_lost],
        "addresses_gained": format_ranges(change.allocated, version),
        "addresses_lost": format_ranges(change.released, version),
    }


def _print_diff(result: dict[str, Any]) -> None:
    start, end = result["from"], result["to"]
    typer.echo(
        f"network {result['network']} from {start['at']} (version {start['version']}) "
        f"to {end['at']} (version {end['version']}):"
    )
    lines = [f"+ container {_container_text(row)}" for row in result["containers_gained"]]
    lines += [f"- container {_container_text(row)}" for row in result["containers_lost"]]
    lines += [f"+ allocated {text}" for text in result["addresses_gained"]]
    lines += [f"- released {text}" for text in result["addresses_lost"]]
    typer.echo("\n".join(lines) if lines else "no change")


def _container_text(row: dict[str, Any]) -> str:
    return f"{row['id']}: ip {row['ip']} subnet {row['subnet']} gateway {row['gateway']}"
