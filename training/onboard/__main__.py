"""``python -m training.onboard``: discover intents in chat history, review them, build the assistant.

    python -m training.onboard --transcripts FOLDER --out PROJECT   read, redact, discover, propose
    python -m training.onboard review PROJECT <command> ...          accept, rename, merge, split, ...
    python -m training.onboard build PROJECT [options]               write, train and evaluate the Rasa project

See docs/onboarding.md for the whole flow.
"""
from __future__ import annotations

import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "review":
        from training.onboard import review

        return review.main(argv[1:])
    if argv and argv[0] == "build":
        from training.onboard import build

        return build.main(argv[1:])
    from training.onboard import discover

    return discover.main(argv)


if __name__ == "__main__":
    sys.exit(main())
