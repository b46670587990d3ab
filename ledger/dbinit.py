"""Make the event store append-only in the database itself.

The ledger never updates or deletes an event, and the hash chain lets
``verify`` detect an edit after the fact. Triggers on the events table
reject the edit itself, from any client: UPDATE and DELETE on every row,
and on PostgreSQL TRUNCATE as well. A table owner or superuser
can still drop the triggers, so they guard against mistakes and against
roles that do not own the table, which ``writer_role`` helps to set up.

Every statement here is fixed text: table, schema and role names pass
through ``psycopg.sql.Identifier`` (PostgreSQL) or are the library's
constant table name, checked against a pattern (SQLite), and no value is
formatted into SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ledger.errors import InvalidInput

TRIGGER_FUNCTION = "netledger_reject_change"
ROW_TRIGGER = "netledger_append_only"
TRUNCATE_TRIGGER = "netledger_no_truncate"
REJECTION = "the netledger event store is append-only"
ROLE_PATTERN = r"[a-z_][a-z0-9_]{0,62}"

_POSTGRES_FUNCTION = (
    "CREATE OR REPLACE FUNCTION {schema}.{function}() RETURNS trigger LANGUAGE plpgsql AS $body$ "
    "BEGIN "
    "RAISE EXCEPTION '" + REJECTION + ": % on %.% is not allowed', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME "
    "USING ERRCODE = 'insufficient_privilege', "
    "HINT = 'events are never changed or removed; record a new event instead'; "
    "END $body$"
)


def parse_role_name(role: str) -> str:
    """Check a PostgreSQL role name: 1-63 of a-z, 0-9 and '_', not starting with a digit."""
    if not re.fullmatch(ROLE_PATTERN, role):
        raise InvalidInput(
            f"invalid role name {role!r}: use 1-63 of a-z, 0-9 and '_', starting with a letter or '_'"
        )
    return role


@dataclass(frozen=True)
class InitReport:
    """The database, events table, triggers and role that ``protect`` set up."""

    database: str
    table: str
    triggers: list[str]
    role: str | None = None


def protect(ledger: Any, writer_role: str | None = None) -> InitReport:
    """Install the append-only triggers on the ledger's events table (idempotent)."""
    recorder = ledger.recorder
    table = recorder.events_table_name
    if type(recorder).__module__ == "eventsourcing.sqlite":
        if writer_role is not None:
            raise InvalidInput("--writer-role needs PostgreSQL: SQLite has no roles")
        return _protect_sqlite(recorder.datastore, table)
    report = _protect_postgres(recorder.datastore, table, writer_role)
    if writer_role is not None:
        _grant_read_models(ledger, writer_role)
    return report


def _grant_read_models(ledger: Any, role: str) -> None:
    """Create the read models' tables and let ``role`` keep them caught up.

    Queries catch the read models up before they answer, so a role that runs
    them writes rows and tracking positions. Rebuilding drops the tables,
    which only their owner may do.
    """
    from psycopg import sql

    from projections.runner import READ_MODELS, ReadModels

    ReadModels(ledger)
    schema = ledger.recorder.datastore.schema
    tables = [name for model in READ_MODELS for name in (*model.schema.tables, model.schema.tracking_table)]
    with ledger.recorder.datastore.transaction(commit=True) as cursor:
        for table in tables:
            cursor.execute(
                sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {}.{} TO {}").format(
                    sql.Identifier(schema), sql.Identifier(table), sql.Identifier(role)
                )
            )


def _protect_sqlite(datastore: Any, table: str) -> InitReport:
    # SQLite statements cannot take a table name as a parameter; the name is
    # the library's constant, checked here before it is written into SQL.
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", table):
        raise ValueError(f"unexpected events table name {table!r}")
    triggers = []
    with datastore.transaction(commit=True) as cursor:
        for operation in ("UPDATE", "DELETE"):
            name = f"{ROW_TRIGGER}_{operation.lower()}"
            cursor.execute(
                f"CREATE TRIGGER IF NOT EXISTS {name} BEFORE {operation} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{REJECTION}: {operation} on {table} is not allowed'); END"
            )
            triggers.append(name)
    return InitReport("sqlite", table, triggers)


def _protect_postgres(datastore: Any, table: str, writer_role: str | None) -> InitReport:
    from psycopg import sql

    schema = sql.Identifier(datastore.schema)
    names = {"schema": schema, "table": sql.Identifier(table), "function": sql.Identifier(TRIGGER_FUNCTION)}
    statements = [
        sql.SQL(_POSTGRES_FUNCTION).format(**names),
        sql.SQL("DROP TRIGGER IF EXISTS {row} ON {schema}.{table}").format(row=sql.Identifier(ROW_TRIGGER), **names),
        sql.SQL(
            "CREATE TRIGGER {row} BEFORE UPDATE OR DELETE ON {schema}.{table} "
            "FOR EACH ROW EXECUTE FUNCTION {schema}.{function}()"
        ).format(row=sql.Identifier(ROW_TRIGGER), **names),
        sql.SQL("DROP TRIGGER IF EXISTS {truncate} ON {schema}.{table}").format(
            truncate=sql.Identifier(TRUNCATE_TRIGGER), **names
        ),
        sql.SQL(
            "CREATE TRIGGER {truncate} BEFORE TRUNCATE ON {schema}.{table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION {schema}.{function}()"
        ).format(truncate=sql.Identifier(TRUNCATE_TRIGGER), **names),
    ]
    if writer_role is not None:
        statements.extend(_writer_grants(datastore.schema, table, writer_role))
    with datastore.transaction(commit=True) as cursor:
        for statement in statements:
            cursor.execute(statement)
    database = datastore.pool.kwargs.get("dbname", "")
    return InitReport(str(database), f"{datastore.schema}.{table}", [ROW_TRIGGER, TRUNCATE_TRIGGER], writer_role)


def _writer_grants(schema_name: str, table: str, role: str) -> list[Any]:
    """Return the statements that let ``role`` append and read, and nothing more.

    The ledger's append takes an advisory lock, not the table lock of the
    library's default path (``ledger.pgstore``), so the role needs no UPDATE
    privilege. Roles set up by earlier versions had it, so it is revoked.
    """
    from psycopg import sql

    parse_role_name(role)
    snapshots = table.removesuffix("_events") + "_snapshots"
    names = {
        "role": sql.Identifier(role),
        "schema": sql.Identifier(schema_name),
        "table": sql.Identifier(table),
        "snapshots": sql.Identifier(snapshots),
        "sequence": sql.Identifier(f"{table}_notification_id_seq"),
    }
    texts = [
        "DO $do$ BEGIN CREATE ROLE {role} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $do$",
        "GRANT USAGE ON SCHEMA {schema} TO {role}",
        "GRANT SELECT, INSERT ON {schema}.{table} TO {role}",
        "GRANT SELECT, INSERT ON {schema}.{snapshots} TO {role}",
        "GRANT USAGE ON SEQUENCE {schema}.{sequence} TO {role}",
        "REVOKE UPDATE, DELETE, TRUNCATE ON {schema}.{table} FROM {role}",
    ]
    return [sql.SQL(text).format(**names) for text in texts]
