"""netledger: an event-sourced IP address ledger for container networks."""

__version__ = "0.1.0"
