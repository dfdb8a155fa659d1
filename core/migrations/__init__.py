"""Alembic revision scripts of the project's own tables (`core.db`).

`core.db.migrate(engine)` runs them (``env.py``, with a configuration built in
code; no alembic.ini). One file a revision in ``versions/``, numbered
``0001``, ``0002``, ...: append a new one, never edit one that has shipped.
"""
