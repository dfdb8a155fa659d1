"""Shared needs of every part: settings, the sentence encoder, the SQL layer,
personal-data redaction. Imports nothing from the other packages, so `nlu/`,
`retrieval/` and `recommender/` can all reach it without a back-arrow."""

import os as _os

# Rasa's usage and crash reports stay off in every process that uses the project (a training
# script, a server loading our components) unless RASA_TELEMETRY_ENABLED is set (docs/security.md).
_os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
