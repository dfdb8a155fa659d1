"""From a company's chat history to its own assistant (issue 19): read, discover, review, build.

``python -m training.onboard --transcripts FOLDER --out PROJECT`` reads the
transcripts (`training.onboard.transcripts`), finds the customers' requests
and the answers that resolved them (`training.onboard.requests`), clusters
the requests into candidate intents (`training.onboard.discover`) and writes
the proposal that supervisors review (`core.onboarding`); ``build`` turns the
reviewed result into a trained Rasa project (`training.onboard.build`).
"""
