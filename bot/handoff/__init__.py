"""Handing a conversation to a person and back.

- `queue.py`: the handoffs table, its one writer (open, take, close) and the queue positions.
"""
