"""The ``netledger`` command-line interface."""
