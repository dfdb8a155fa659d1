"""Privacy: erasure that finishes, a copy of one's data, and retention.

- `bot.privacy.requests`: durable erasure requests (table ``erasure_requests``),
  one open request per customer, claimed atomically by one worker at a time.
- `bot.privacy.erase`: what erasing one identity removes, store by store.
- `bot.privacy.worker`: the worker that runs requests until every store is
  clean, retrying with backoff, and purges what is older than ``retention_days``.
  It runs in every action-server process, and once from cron with
  ``python -m bot.privacy.worker --once``.
- `bot.privacy.export`: a machine-readable copy of what is held about a
  customer (GDPR Article 15), ``python -m bot.privacy.export CUSTOMER_ID``.
- `bot.privacy.download`: the Rasa server route that hands a customer their
  export with the unguessable token they were given in their conversation.
"""
