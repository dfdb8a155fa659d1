"""Who may do what: customer identity, trusted callers, staff accounts, modes (issue 13).

- `identity`: the one writer of conversation -> verified customer links;
- `tokens`: customer tokens signed by the company's own website (the widget);
- `callers`: bearer credentials of trusted REST callers;
- `admin`: ``python -m bot.security.admin`` (REST callers, staff accounts).
"""
