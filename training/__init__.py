"""Offline scripts that fine-tune the intent classifier, build the answer index, train the recommender and benchmark them."""
