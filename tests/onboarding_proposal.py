"""A small onboarding proposal, as discovery would write it, for the review tests (CLI, page, browser).

Five candidates: two near-duplicates about lost cards (one with outliers),
a simple question with a drafted response and alternatives, a small task,
and one whose customer text carries markup (the pages must escape it).
"""
from __future__ import annotations

from pathlib import Path
from typing import List

from core.onboarding import Candidate, Example, OnboardingProject, Proposal


def _examples(prefix: str, texts: List[str], outliers: int = 0) -> List[Example]:
    return [Example(id=f"{prefix}{n}", text=t, answer="", conversation=f"conv-{prefix}{n}",
                    source=f"chats.jsonl:{n * 3}", outlier=n > len(texts) - outliers)
            for n, t in enumerate(texts, 1)]


def small_proposal() -> Proposal:
    """The proposal the review tests start from (generation 1)."""
    lost = _examples("l", ["I lost my card", "my card is lost", "can't find my bank card", "lost card what now",
                           "where do I report a lost card", "how do I change my address",
                           "update my postal address"], outliers=2)
    stolen = _examples("s", ["my card was stolen", "someone stole my wallet and card", "card stolen yesterday",
                             "stolen card please block", "thief took my card"])
    hours = _examples("h", ["when are you open", "opening hours?", "are you open on sunday",
                            "what time do you close", "what are your hours"])
    refund = _examples("r", ["refund for order 12345", "where is my refund of 20 EUR", "refund not received"])
    markup = _examples("m", ["<script>alert('x')</script> is my page broken", "page shows <b>error</b>",
                             "the app crashes & closes", "app error on login", "login page is blank"])
    return Proposal(generation=1, estimate={"k": 5, "low": 4, "high": 7, "method": "silhouette"},
                    summary={"files": 2, "conversations": 31, "requests": 25, "skipped": 1},
                    candidates=[
                        Candidate("c1", "lost_card", lost, kind="task", kind_evidence=["agents asked for the card's last four"],
                                  words=["lost", "card", "report"], cohesion=0.61, near_duplicates=["c2"],
                                  response="Please freeze the card in the app.", response_alternatives=[]),
                        Candidate("c2", "stolen_card", stolen, kind="task", kind_evidence=["handed to a person 4 of 5 times"],
                                  words=["stolen", "card", "thief"], cohesion=0.72, near_duplicates=["c1"]),
                        Candidate("c3", "opening_hours", hours, kind="question",
                                  kind_evidence=["one answer resolved 5 of 5 requests"], words=["open", "hours", "close"],
                                  cohesion=0.83, response="We are open 9:00-17:00, Monday to Friday.",
                                  response_alternatives=["Our hours are 9 to 5 on weekdays.", "Mon-Fri 9-5"]),
                        Candidate("c4", "refund_status", refund, kind="task", kind_evidence=["order numbers in 2 of 3"],
                                  words=["refund", "order"], cohesion=0.55,
                                  entity_spans=[{"kind": "order number", "text": "12345", "count": 1},
                                                {"kind": "amount", "text": "20 EUR", "count": 1}]),
                        Candidate("c5", "app_error", markup, kind="question", kind_evidence=["<i>answered</i> 3 of 5"],
                                  words=["page", "<b>error</b>", "app"], cohesion=0.4,
                                  response="Try <em>reinstalling</em> the app & signing in again."),
                    ])


def write_small_proposal(folder: Path) -> OnboardingProject:
    """`small_proposal` written into the onboarding project `folder`; the project."""
    project = OnboardingProject(folder)
    project.write_proposal(small_proposal())
    return project
