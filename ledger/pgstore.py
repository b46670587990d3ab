"""The PostgreSQL recorder of the events table: one round trip per command.

The library can append a command's events through a database function, one
statement in one implicit transaction, which is much faster than its
default path (a transaction with a table lock, a notification and the
inserts). Its function leaves out the table lock, though, and that lock is
what makes notification ids commit in order. Without it, a writer that drew
id 11 can commit before the one that drew id 10, and a read model that has
read up to 11 never reads 10. The read models here track one position each,
so they rely on that order.

``OrderedInsertRecorder`` keeps the function and puts the lock back: its
function takes the table lock before it inserts. It is installed under a
name of its own, so it never replaces the library's function, which other
applications on the same database may use.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.sql import SQL, Identifier

INSERT_FUNCTION_PREFIX = "netledger_insert_events_"


class OrderedInsertRecorder(PostgresApplicationRecorder):
    """Append events through a database function that locks the events table first."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pg_function_name_insert_events = INSERT_FUNCTION_PREFIX + self.datastore.originator_id_type
        schema = Identifier(self.datastore.schema)
        function = Identifier(self.pg_function_name_insert_events)
        self.sql_invoke_pg_function_insert_events = SQL("SELECT * FROM {schema}.{function}((%s))").format(
            schema=schema, function=function
        )
        self.sql_create_statements[self.create_insert_function_statement_index] = SQL(
            "CREATE OR REPLACE FUNCTION {schema}.{function}(events {schema}.{event_type}[]) "
            "RETURNS SETOF bigint LANGUAGE plpgsql AS $body$ "
            "BEGIN "
            "SET LOCAL lock_timeout = '{lock_timeout}s'; "
            "LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE; "
            "NOTIFY {channel}; "
            "RETURN QUERY "
            "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state) "
            "SELECT originator_id, originator_version, topic, state FROM unnest(events) "
            "RETURNING notification_id; "
            "END $body$"
        ).format(
            schema=schema,
            function=function,
            event_type=Identifier(self.stored_event_type_name),
            lock_timeout=self.datastore.lock_timeout,
            table=Identifier(self.events_table_name),
            channel=Identifier(self.channel_name),
        )
