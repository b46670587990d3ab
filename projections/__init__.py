"""Read models of the ledger, kept in its database: free addresses, occupancy and address history.

``ReadModels`` opens them over a ``Ledger`` and keeps them caught up.
``projections.queries`` runs queries against them, and
``compare_with_replay`` checks them against a fresh replay of the events.
"""

from projections.compare import compare_with_replay
from projections.runner import NAMES, ReadModels, ReadModelStatus, follow

__all__ = ["NAMES", "ReadModelStatus", "ReadModels", "compare_with_replay", "follow"]
