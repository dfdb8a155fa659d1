"""Shared needs of every part: settings, the sentence encoder, the SQL layer,
personal-data redaction. Imports nothing from the other packages, so `nlu/`,
`retrieval/` and `recommender/` can all reach it without a back-arrow."""
