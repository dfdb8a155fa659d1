"""Personalised suggestions (products, services, help articles) for a customer in a conversation, behind one small interface: `Recommender`."""
