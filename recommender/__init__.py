"""Personalised suggestions (products, services, help articles) for a customer in a conversation, behind one small interface: `Recommender`.

    from recommender import Recommender
    rec = Recommender.fit(interactions, items)        # pandas DataFrames
    rec.recommend("cust-1", k=3, context="exchange_rate")
    rec.recommend("cust-1", k=3, strategy="popularity")   # one part alone (STRATEGIES), as experiment arms compare

The names below are the package's public interface, the only ones `bot/` may
import (import-linter checks it, docs/architecture.md); the store functions
(`recommender.store`) read and write this package's tables (``customers``,
``items``, ``interactions``).
"""
from recommender.config import ConfigError, RecommenderConfig
from recommender.data import DataFileError, load_customers, load_interactions, load_items
from recommender.model import STRATEGIES, CustomerProfile, ModelFolderError, Recommender, Suggestion, UnknownItemError
from recommender.store import (
    customer_summary,
    history_source,
    read_interactions,
    record_interaction,
    set_suggestions_opt_out,
    suggestions_opted_out,
)

__all__ = [
    "Recommender", "RecommenderConfig", "Suggestion", "CustomerProfile", "STRATEGIES",
    "ConfigError", "DataFileError", "ModelFolderError", "UnknownItemError",
    "load_interactions", "load_items", "load_customers",
    "customer_summary", "history_source", "read_interactions", "record_interaction",
    "set_suggestions_opt_out", "suggestions_opted_out",
]
