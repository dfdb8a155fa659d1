"""Every knob of the recommender, with its default, in one place.

`Recommender.fit(interactions, items, **config)` takes these names as keyword
arguments; an unknown name is refused with the list of known ones, so a typo
in a configuration never passes silently.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Optional

# The parts that can score an item, in the order reasons prefer them.
COMPONENTS = ("context", "sequence", "collaborative", "content", "popularity")


class ConfigError(ValueError):
    """A recommender configuration names an unknown setting or holds an unusable value."""


@dataclasses.dataclass
class RecommenderConfig:
    """Which parts score items, how they are blended, and how each is trained."""

    # Blend weights; 0 switches a part off (and skips training it).
    # context: match with the current intent / retrieved topic tags.
    context_weight: float = 1.0
    # sequence: SASRec self-attention over the customer's recent items.
    sequence_weight: float = 0.3
    # collaborative: item-item co-occurrence (cosine) over recent items.
    collaborative_weight: float = 0.7
    # content: item text embedded with the project's sentence encoder.
    content_weight: float = 0.2
    # popularity: overall (and segment) popularity; what new customers get.
    popularity_weight: float = 0.1

    # How far back a customer's history is read, and how fast older events fade.
    history_length: int = 30
    recency_decay: float = 0.75

    # Collaborative model: neighbours kept per item, and cosine shrinkage.
    neighbours: int = 200
    shrinkage: float = 0.0

    # Sequence model (SASRec): sizes, training length, sampled softmax negatives.
    sequence_dim: int = 64
    sequence_blocks: int = 2
    sequence_heads: int = 1
    sequence_max_len: int = 50
    sequence_dropout: float = 0.2
    sequence_epochs: int = 30
    sequence_batch_size: int = 64
    sequence_lr: float = 2e-3
    # Negatives per batch, drawn in proportion to popularity**0.75 with logQ correction;
    # 0 means a full softmax over the catalogue (exact, slower on large catalogues).
    sequence_negatives: int = 1024
    # Threads torch may use while training (serving uses torch's default).
    threads: int = 1

    # Content: encoder ("bundled" or a local folder; None means the settings' encoder).
    encoder: Optional[str] = None
    # A context term that is no item tag matches items by text similarity, scaled to at most this.
    context_similarity_cap: float = 0.8

    # Diversity: MMR trade-off (1.0 = pure relevance, no re-rank) over this many candidates.
    diversity: float = 0.8
    diversity_candidates: int = 50

    # Interaction weights when a row gives none; dismiss is negative feedback, never a like.
    kind_weights: Dict[str, float] = dataclasses.field(
        default_factory=lambda: {"purchase": 3.0, "click": 1.5, "view": 1.0, "topic": 1.0, "rating": 1.0}
    )
    seed: int = 0
    show_progress: bool = False

    @classmethod
    def from_mapping(cls, values: Optional[Mapping[str, Any]] = None, **overrides: Any) -> "RecommenderConfig":
        """A config from a mapping and keyword overrides; unknown names raise `ConfigError`."""
        merged = dict(values or {})
        merged.update(overrides)
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(merged) - set(known))
        if unknown:
            raise ConfigError(
                f"unknown recommender setting(s) {', '.join(unknown)}; known settings: {', '.join(sorted(known))}"
            )
        config = cls(**merged)
        config.validate()
        return config

    def validate(self) -> None:
        """Refuse values no part can use, naming the setting."""
        for name in COMPONENTS:
            if getattr(self, f"{name}_weight") < 0:
                raise ConfigError(f"{name}_weight must be >= 0, got {getattr(self, f'{name}_weight')}")
        if not 0.0 < self.recency_decay <= 1.0:
            raise ConfigError(f"recency_decay must be in (0, 1], got {self.recency_decay}")
        if not 0.0 <= self.diversity <= 1.0:
            raise ConfigError(f"diversity must be in [0, 1], got {self.diversity}")
        for name in ("history_length", "neighbours", "sequence_dim", "sequence_blocks", "sequence_heads",
                     "sequence_max_len", "sequence_batch_size", "threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.sequence_dim % self.sequence_heads:
            raise ConfigError("sequence_dim must be a multiple of sequence_heads")

    def weight(self, component: str) -> float:
        """The blend weight of `component` (one of `COMPONENTS`)."""
        return float(getattr(self, f"{component}_weight"))

    def as_dict(self) -> Dict[str, Any]:
        """The config as plain JSON-able values."""
        return dataclasses.asdict(self)
