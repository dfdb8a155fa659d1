"""Alembic environment: runs the revisions on the connection `core.db.migrate` hands over.

`core.db.migrate` opens the transaction (and, on PostgreSQL, takes the advisory
lock) itself and passes the connection in ``config.attributes["connection"]``;
the revisions run inside that transaction, which it commits.
"""
from alembic import context

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError("the project's migrations run through core.db.migrate(engine), on a live connection")

context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
