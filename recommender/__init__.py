"""Personalised suggestions (products, services, help articles) for a customer in a conversation, behind one small interface: `Recommender`.

    from recommender import Recommender
    rec = Recommender.fit(interactions, items)        # pandas DataFrames
    rec.recommend("cust-1", k=3, context="exchange_rate")
"""
from recommender.config import ConfigError, RecommenderConfig
from recommender.data import DataFileError, load_customers, load_interactions, load_items
from recommender.model import CustomerProfile, ModelFolderError, Recommender, Suggestion, UnknownItemError

__all__ = [
    "Recommender", "RecommenderConfig", "Suggestion", "CustomerProfile",
    "ConfigError", "DataFileError", "ModelFolderError", "UnknownItemError",
    "load_interactions", "load_items", "load_customers",
]
