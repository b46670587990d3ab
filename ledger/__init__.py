"""netledger: an event-sourced IP address ledger for container networks."""

__version__ = "0.1.0"

# The largest position, and the largest count a query takes: both stores keep
# them as 64-bit signed integers, and SQLite fails on a larger parameter.
MAX_POSITION = 2**63 - 1
