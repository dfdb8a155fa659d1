"""Handing a conversation to a person and back.

- `queue.py`: the handoffs table, its one writer (open, take, cancel, close), queue positions and the recent wait;
- `desk.py`: every customer message's routing, the waiting customer, the agents' take / reply / hand back;
- `intake.py`: the checks each message passes first (rate limit, redaction, failures told);
- `delivery.py`: storing and sending desk and agent messages, the widget's state, REST catch-up;
- `notices.py`: the customer-facing texts' names and fallbacks; `hours.py`: opening hours.

Whether to hand over is the dialogue's decision: bot/data/rules.yml, bot/policies.py, bot/actions/dialogue.py.
"""
