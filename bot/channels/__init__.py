"""The assistant's channels: website widget, REST, Slack, Telegram, and the agent inbox.

Each is a Rasa `InputChannel` named in ``bot/credentials.yml`` and served by
the Rasa server under ``/webhooks/<name>/``. Every customer message passes
the handoff desk (`desk.py`) on its way to the assistant; bot messages are
read once into a `replies.BotReply` and drawn by each channel its own way.
The project's changes to Rasa's own code (`bot/rasa_shim.py`) are installed
when Rasa registers these channels (`base.DeskChannel.watch`), not at import.
"""
