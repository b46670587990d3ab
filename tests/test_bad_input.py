"""Malformed input to every command: one error line, the right status, nothing written.

Each case runs the CLI in process against one PostgreSQL store. The store
has an IPv4 network ``web`` with container ``a1`` from the pool and ``s1``
in the special subnet 192.168.77.0/24, an IPv6 network ``v6``, and a
network ``tiny`` whose pool is full. A case must exit with status 2 for invalid
input, 1 for a model refusal or 3 for a database failure, print exactly one
``error:`` line naming the problem on standard error and nothing on
standard output, raise no exception, and leave the event count unchanged.
"""

from __future__ import annotations

import ipaddress
import shlex
import uuid
from collections.abc import Iterator
from typing import Union

import pytest
from typer.testing import CliRunner

from cli.main import app
from ledger.addresses import parse_range
from ledger.aggregate import CommandContext
from ledger.application import Ledger
from ledger.storage import environment_for
from tests import pgserver

pytestmark = pytest.mark.postgres

LONG_ID = "x" * 129
POOL = ["--pool", "10.0.0.0/24"]
Args = Union[str, list[str]]

INVALID_NETWORK_NAME = "invalid network name"
INVALID_ID = "invalid container id"
INVALID_URL = "invalid database URL"
MISSING_DIRECTORY = "directory /nonexistent/dir does not exist; create it or fix the path"

CASES: list[tuple[Args, int, str]] = [
    # network create: pools, exclusions, names and the recorded fields
    ("network create n1 --pool 10.0.0.0/33", 2, "prefix length must be a number from 0 to 32 for IPv4"),
    ("network create n1 --pool 10.0.0.1/24", 2, "10.0.0.1/24 has host bits set"),
    ("network create n1 --pool 10.0.0/24", 2, "'10.0.0' is not an IPv4 or IPv6 address"),
    ("network create n1 --pool 10.0.0.0", 2, "expected a CIDR prefix such as 10.0.0.0/24"),
    ("network create n1 --pool 0.0.0.0/0", 2, "a /0 prefix would take the whole address space"),
    ("network create n1 --pool ::/0", 2, "a /0 prefix would take the whole address space"),
    ("network create n1 --pool 10.0.0.0/-1", 2, "prefix length must be a number from 0 to 32"),
    ("network create n1 --pool 10.0.0.0/999999999999", 2, "prefix length must be a number from 0 to 32"),
    ("network create n1 --pool 10.0.0.9-10.0.0.1", 2, "10.0.0.9 comes after 10.0.0.1"),
    ("network create n1 --pool 10.0.0.1-fd00::1", 2, "it mixes IPv4 and IPv6"),
    ("network create n1 --pool 10.0.0.0/24 --pool fd00::/120", 2, "pools of network n1 mix IPv4 and IPv6"),
    ("network create n1 --pool 10.0.0.0/24 --exclude fd00::1", 2, "exclusion fd00::1 is IPv6"),
    ("network create n1 --pool 10.0.0.0/30 --exclude 10.0.0.0/30", 2, "empty after exclusions"),
    (["network", "create", "n1", "--pool", ""], 2, "invalid pool ''"),
    (["network", "create", "n1", "--pool", " "], 2, "invalid pool ' '"),
    ("network create n1 --pool 256.0.0.0/8", 2, "'256.0.0.0' is not an IPv4 or IPv6 address"),
    ("network create n1 --pool 10.0.0.0/24 --policy random", 2, "invalid policy 'random'"),
    ("network create .hidden --pool 10.0.0.0/24", 2, INVALID_NETWORK_NAME),
    (["network", "create", "", *POOL], 2, INVALID_NETWORK_NAME),
    (["network", "create", "x" * 65, *POOL], 2, INVALID_NETWORK_NAME),
    (["network", "create", "w\u00e9b", *POOL], 2, INVALID_NETWORK_NAME),
    (["network", "create", "web; DROP TABLE netledger_events", *POOL], 2, INVALID_NETWORK_NAME),
    (["network", "create", "web'--", *POOL], 2, INVALID_NETWORK_NAME),
    (["network", "create", 'we"b', *POOL], 2, INVALID_NETWORK_NAME),
    (["network", "create", "web/../x", *POOL], 2, INVALID_NETWORK_NAME),
    ("network create web --pool 10.0.0.0/24", 1, "network web already exists"),
    ("network create n1 --pool 10.0.0.0/24 --exclude 10.0.0.300", 2, "invalid exclusion 10.0.0.300"),
    ("network create n1 --pool 10.0.0.0/24 --exclude 10.0.0.5-10.0.0.1", 2, "10.0.0.5 comes after 10.0.0.1"),
    ("network create n1 --pool 10.0.0.0-10.0.0.255-10.0.1.0", 2, "expected FIRST-LAST with one '-'"),
    ("network create n1 --pool 10.0.0.0/24/8", 2, "prefix length must be a number from 0 to 32"),
    ("network create n1 --pool fd00::/129", 2, "prefix length must be a number from 0 to 128 for IPv6"),
    ("network create n1 --pool fd00::1/64", 2, "fd00::1/64 has host bits set"),
    ("network create n1 --pool fe80::%eth0/64", 2, "invalid pool fe80::%eth0/64: an IPv6 zone index"),
    ("network create n1 --pool fe80::/64%eth0", 2, "invalid pool fe80::/64%eth0: an IPv6 zone index"),
    ("network create n1 --pool fe80::1-fe80::9%eth0", 2, "an IPv6 zone index"),
    ("network create n1 --pool fd00::/64 --exclude fd00::/64%eth0", 2, "invalid exclusion fd00::/64%eth0: an IPv6 zone"),
    ("network create n1 --pool 10.0.0.0/24 --exclude 10.9.0.0/24", 2, "exclusion 10.9.0.0/24: it overlaps no pool"),
    ("network create n1 --pool 10.0.0.0/24 --exclude 10.0.1.7", 2, "exclusion 10.0.1.7: it overlaps no pool"),
    ("network create n1 --pool 10.0.0.0/24 --pool 10.0.2.0/24 --exclude 10.0.1.0-10.0.1.255", 2, "overlaps no pool"),
    ("network create n1 --pool 10.0.0.0/8 --exclude abc", 2, "invalid exclusion abc"),
    (["network", "create", "n1", *POOL, "--actor", ""], 2, "--actor is empty"),
    (["network", "create", "n1", *POOL, "--actor", "\x00"], 2, "--actor must be 1-128 printable characters"),
    (["network", "create", "n1", *POOL, "--actor", "a" * 129], 2, "--actor must be 1-128 printable characters"),
    (["network", "create", "n1", *POOL, "--reason", "a\nb"], 2, "--reason must be printable text on one line"),
    (["network", "create", "n1", *POOL, "--reason", "r" * 1001], 2, "at most 1000 characters"),
    (["network", "create", "n1", *POOL, "--request-id", ""], 2, "--request-id must be 1-128 printable characters"),
    (["network", "create", "n1", *POOL, "--request-id", LONG_ID], 2, "--request-id must be 1-128"),
    (["network", "create", "n1", *POOL, "--request-id", "a\tb"], 2, "--request-id must be 1-128"),
    (["network", "create", "n1", *POOL, "--exclude", ""], 2, "invalid exclusion ''"),
    ("network create n1 --pool 1.2.3.4/32 --exclude 1.2.3.4", 2, "empty after exclusions"),
    # container create: ids, addresses, subnets, families, refusals
    ("container create nope", 1, "network nope not found"),
    (["container", "create", "web", "--id", ""], 2, INVALID_ID),
    (["container", "create", "web", "--id", LONG_ID], 2, "(129 characters)"),
    (["container", "create", "web", "--id", "a b"], 2, INVALID_ID),
    (["container", "create", "web", "--id", "\u00e9"], 2, INVALID_ID),
    (["container", "create", "web", "--id", "a1; DROP TABLE netledger_events;--"], 2, INVALID_ID),
    (["container", "create", "web", "--id", "../../etc"], 2, INVALID_ID),
    (["container", "create", "web", "--id", "a1'); DELETE FROM netledger_events; --"], 2, INVALID_ID),
    ("container create web --id a1", 1, "container a1 already exists in network web"),
    ("container create web --ip 10.50.0", 2, "invalid --ip address 10.50.0"),
    ("container create web --ip 10.50.0.1/32", 2, "invalid --ip address 10.50.0.1/32"),
    ("container create web --ip fd00::1", 2, "address fd00::1 is IPv6 but network web is IPv4"),
    ("container create web --ip 10.99.0.1", 1, "address 10.99.0.1 is not in the pool of network web"),
    ("container create web --ip 10.50.0.1", 1, "container a1 holds it as its ip"),
    ("container create web --ip 10.50.0.0", 1, "address 10.50.0.0 is not in the pool"),
    ("container create web --ip 10.50.0.255", 1, "address 10.50.0.255 is not in the pool"),
    (["container", "create", "web", "--ip", ""], 2, "invalid --ip address ''"),
    (["container", "create", "web", "--ip", " "], 2, "invalid --ip address ' '"),
    (["container", "create", "web", "--ip", "9" * 500], 2, "(500 characters)"),
    (["container", "create", "web", "--ip", "10.50.0.9\x00"], 2, "invalid --ip address '10.50.0.9\\x00'"),
    ("container create v6 --ip fd00:50::9%eth0", 2, "an IPv6 zone index"),
    ("container create web --subnet 192.168.1.0/24", 2, "--subnet needs --ip"),
    ("container create web --subnet 192.168.1.1/24 --ip 192.168.1.5", 2, "192.168.1.1/24 has host bits set"),
    ("container create web --subnet 192.168.1.0/24 --ip 192.168.2.5", 1, "is not in subnet 192.168.1.0/24"),
    ("container create web --subnet 10.50.0.0/25 --ip 10.50.0.5", 1, "overlaps the pool of network web"),
    ("container create web --subnet 192.168.1.0/24 --ip 192.168.1.0", 1, "is the network address of subnet"),
    ("container create web --subnet 192.168.1.0/24 --ip 192.168.1.255", 1, "is the broadcast address of subnet"),
    ("container create web --subnet fd00::/64 --ip fd00::5", 2, "subnet fd00::/64 is IPv6 but network web is IPv4"),
    ("container create web --subnet 192.168.1.0/24 --ip fd00::5", 2, "address fd00::5 is IPv6"),
    ("container create web --subnet 0.0.0.0/0 --ip 1.2.3.4", 1, "overlaps the pool of network web"),
    ("container create web --subnet 192.168.77.0/25 --ip 192.168.77.5", 1, "overlaps subnet 192.168.77.0/24 of container s1"),
    ("container create web --subnet 192.168.77.0/24 --ip 192.168.77.5", 1, "container s1 holds it as its ip"),
    ("container create web --subnet 192.168.1.0/33 --ip 192.168.1.5", 2, "prefix length must be a number from 0 to 32"),
    ("container create web --id zz --request-id seed-a1", 1, "request id seed-a1 was already used on network web"),
    (["container", "create", "bad name"], 2, INVALID_NETWORK_NAME),
    ("container create v6 --ip 10.50.0.7", 2, "address 10.50.0.7 is IPv4 but network v6 is IPv6"),
    ("container create v6 --subnet fd00:99::/64 --ip fd00:99::1:2:3:4:5", 1, "is not in subnet fd00:99::/64"),
    ("container create tiny", 1, "pool of network tiny is exhausted"),
    # container destroy, show and list; network show
    ("container destroy web ghost", 1, "container ghost not found in network web"),
    (["container", "destroy", "web", "a b"], 2, INVALID_ID),
    ("container destroy nope a1", 1, "network nope not found"),
    (["container", "destroy", "web", ""], 2, INVALID_ID),
    ("container destroy web a1 --request-id seed-a1", 1, "request id seed-a1 was already used"),
    ("container show web ghost", 1, "container ghost not found in network web"),
    (["container", "show", "web", "a b"], 2, INVALID_ID),
    (["container", "show", "web", "x" * 200], 2, "(200 characters)"),
    ("container list nope", 1, "network nope not found"),
    (["container", "list", "bad name"], 2, INVALID_NETWORK_NAME),
    ("network show nope", 1, "network nope not found"),
    (["network", "show", "bad name"], 2, INVALID_NETWORK_NAME),
    # pool allocate and release
    ("pool allocate nope", 1, "network nope not found"),
    ("pool allocate tiny", 1, "pool of network tiny is exhausted"),
    ("pool allocate web --two --request-id seed-a1", 1, "request id seed-a1 was already used"),
    ("pool release web 10.50.0.999", 2, "invalid address 10.50.0.999"),
    (["pool", "release", "web", ""], 2, "invalid address ''"),
    ("pool release web fd00::1", 2, "address fd00::1 is IPv6 but network web is IPv4"),
    ("pool release web 10.50.0.1", 1, "cannot be released: container a1 holds it"),
    ("pool release web 10.50.0.0/24", 2, "invalid address 10.50.0.0/24"),
    ("pool release nope 10.50.0.1", 1, "network nope not found"),
    # --db URLs
    ("network list --db mysql://x/y", 2, INVALID_URL),
    ("network list --db sqlite://host/x", 2, "a SQLite URL is sqlite:///relative/path"),
    ("network list --db sqlite:///", 2, "a SQLite URL is sqlite:///relative/path"),
    ("network list --db sqlite:////tmp", 2, "/tmp is a directory, not a file"),
    ("network list --db postgresql://127.0.0.1:99999/x", 2, "the port is not a number from 1 to 65535"),
    ("network list --db postgresql://127.0.0.1:abc/x", 2, "the port is not a number from 1 to 65535"),
    ("network list --db postgresql://127.0.0.1/", 2, "name one database"),
    ("network list --db postgresql://127.0.0.1/a/b", 2, "name one database"),
    ("network list --db postgresql://127.0.0.1/db?bogus=1", 2, "unknown option 'bogus'"),
    ("network list --db postgresql://127.0.0.1/db?connect_timeout=abc", 2, "connect_timeout 'abc' is not a whole number"),
    ("network list --db postgresql://127.0.0.1/db?connect_timeout=0", 2, "connect_timeout '0' is not a whole number"),
    ("network list --db postgresql://127.0.0.1/db?create_tables=maybe", 2, "create_tables must be yes or no"),
    ("network list --db postgresql://[::1/db", 2, "it cannot be parsed"),
    ("network list --db postgresql://127.0.0.1/db?schema=x%22%3BDROP", 2, "schema must be 1-63 of a-z"),
    ("network list --db http://example.invalid/x", 2, "use sqlite:///PATH or postgresql://"),
    ("network list --db postgresql://u:pw@127.0.0.1:1/db?connect_timeout=1", 3, "port 1 failed: Connection refused"),
    ("network list --db sqlite:////nonexistent/dir/x.db", 2, MISSING_DIRECTORY),
    ("network list --db sqlite:/tmp/x.db", 2, "a SQLite URL is sqlite:///relative/path or sqlite:////absolute/path"),
    ("network create n1 --pool 10.0.0.0/24 --db sqlite:////nonexistent/dir/x.db", 2, MISSING_DIRECTORY),
    ("container create web --db sqlite:////nonexistent/dir/x.db", 2, MISSING_DIRECTORY),
    ("events --db sqlite:////nonexistent/dir/x.db", 2, MISSING_DIRECTORY),
    ("events --db sqlite:///nonexistent/dir/x.db", 2, "(sqlite:///PATH is relative; sqlite:////PATH is absolute)"),
    (["container", "create", "web", "--db", ""], 2, "the event store URL (--db or NETLEDGER_DB) is blank"),
    (["network", "list", "--db", " "], 2, "the event store URL (--db or NETLEDGER_DB) is blank"),
    ("network list --db sqlite:///x.db#frag", 2, "a database URL has no #fragment; remove #frag"),
    ("network list --db postgresql://127.0.0.1/db?schema", 2, "option 'schema' has no value"),
    ("network list --db postgresql://127.0.0.1/db?connect_timeout=", 2, "option 'connect_timeout' has no value"),
    (["container", "create", "web", "--request-id", "   "], 2, "--request-id must be 1-128 printable characters"),
    # positions beyond 64 bits, which SQLite cannot take as parameters
    ("diff web 1 99999999999999999999999", 2, "invalid TO position '99999999999999999999999': use a whole number"),
    ("diff web 9223372036854775808 TO", 2, "invalid FROM position '9223372036854775808'"),
    # the other commands
    ("events --since yesterday", 2, "invalid --since time 'yesterday'"),
    ("events --until 2020-13-45", 2, "invalid --until time '2020-13-45'"),
    ("events --since 2026-12-05 --until 2026-12-01", 2, "--since 2026-12-05 is after --until 2026-12-01"),
    ("events --since 2026-12-01T12:00+01:00 --until 2026-12-01T10:30", 2, "is after --until 2026-12-01T10:30"),
    ("events --type NoSuchEvent", 2, "invalid event type 'NoSuchEvent'"),
    (["events", "--network", "bad name"], 2, INVALID_NETWORK_NAME),
    ("replay web --at notatime", 2, "invalid --at time 'notatime'"),
    ("replay web", 2, "give exactly one of --at TIME and --position N"),
    ("replay nope --position 1", 1, "network nope not found"),
    ("diff web abc def", 2, "invalid FROM time 'abc'"),
    ("diff web 17 9", 2, "FROM 17 is after TO 9; FROM must not be after TO"),
    ("diff web 2026-12-05 2026-12-01", 2, "FROM 2026-12-05 is after TO 2026-12-01; FROM must not be after TO"),
    ("diff web 999999 2000-01-01", 2, "FROM 999999 is after TO 2000-01-01; FROM must not be after TO"),
    ("free nope", 1, "network nope not found"),
    ("audit ip 10.50.0", 2, "invalid address 10.50.0"),
    ("audit ip notanip", 2, "invalid address notanip"),
    (["audit", "container", "a b"], 2, INVALID_ID),
    ("audit ip 10.50.0.1 --at garbage", 2, "invalid --at time 'garbage'"),
    ("audit ip 10.50.0.1 --at 0001-01-01T00:00:00+01:00", 2, "in UTC it falls outside the years 1 to 9999"),
    ("events --until 9999-12-31T23:59:59-01:00", 2, "in UTC it falls outside the years 1 to 9999"),
    ("replay web --at 0001-01-01T00:30+01:00", 2, "in UTC it falls outside the years 1 to 9999"),
    ("export --format xml", 2, "invalid --format 'xml'"),
    ("verify nope", 1, "network nope not found"),
    ("db init --writer-role Bad-Role", 2, "invalid role name 'Bad-Role'"),
    (["db", "init", "--writer-role", "x; DROP TABLE netledger_events"], 2, "invalid role name"),
    ("network import-host-local web /nonexistent/dir", 2, "/nonexistent/dir is not a directory"),
]

runner = CliRunner()


@pytest.fixture(scope="module")
def store(postgres_server: str) -> Iterator[tuple[str, Ledger]]:
    """Return a seeded store's URL and a ledger open on it, for the whole module."""
    name = f"netledger_test_{uuid.uuid4().hex[:12]}"
    pgserver.create_database(postgres_server, name)
    url = pgserver.with_database(postgres_server, name)
    ledger = Ledger(env=environment_for(url))
    seed(ledger)
    yield url, ledger
    ledger.close()
    pgserver.drop_database(postgres_server, name)


def seed(ledger: Ledger) -> None:
    def context(request_id: str) -> CommandContext:
        return CommandContext("seed", request_id)

    ledger.create_network("web", [parse_range("10.50.0.0/24")], [], "lowest", context("seed-web"))
    ledger.create_network("v6", [parse_range("fd00:50::/120")], [], "lowest", context("seed-v6"))
    ledger.create_network("tiny", [parse_range("10.60.0.1-10.60.0.2")], [], "lowest", context("seed-tiny"))
    ledger.allocate("tiny", 2, context("seed-tiny-allocate"))
    ledger.create_container("web", context("seed-a1"), "a1")
    subnet = ipaddress.ip_network("192.168.77.0/24")
    ledger.create_container("web", context("seed-s1"), "s1", ipaddress.ip_address("192.168.77.5"), subnet)


def test_table_has_over_a_hundred_cases() -> None:
    assert len(CASES) >= 100


@pytest.mark.parametrize(("args", "exit_code", "fragment"), CASES, ids=[str(i) for i in range(len(CASES))])
def test_bad_input_rejected_in_one_line(
    store: tuple[str, Ledger], args: Args, exit_code: int, fragment: str
) -> None:
    url, ledger = store
    argv = shlex.split(args) if isinstance(args, str) else list(args)
    if "--db" not in argv:
        argv += ["--db", url]
    before = ledger.event_count()

    result = runner.invoke(app, argv)

    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == exit_code, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr
    assert ledger.event_count() == before


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ("container create", "Missing argument 'network'"),
        ("container create web --bogus", "No such option: --bogus"),
        ("free web --limit -1", "Invalid value for '--limit'"),
        ("events --limit 0", "Invalid value for '--limit'"),
        ("pool release web", "Missing argument 'addresses"),
        ("replay web --position 9223372036854775808", "Invalid value for '--position'"),
        ("events --after 9223372036854775808", "Invalid value for '--after'"),
        ("free web --limit 9223372036854775808", "Invalid value for '--limit'"),
    ],
)
def test_usage_errors_name_the_problem(store: tuple[str, Ledger], args: str, named: str) -> None:
    """Usage errors come from the command-line parser, which prints a usage panel (several lines)."""
    url, ledger = store
    before = ledger.event_count()

    result = runner.invoke(app, [*shlex.split(args), "--db", url])

    assert isinstance(result.exception, SystemExit)
    assert result.exit_code == 2
    assert named in result.stderr
    assert "Traceback" not in result.stderr
    assert ledger.event_count() == before
