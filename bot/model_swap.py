"""The Rasa server's side of a hot swap: a new Rasa model loaded beside the served one, then switched to.

`rasa_loader(get_agent)` is the `core.hotswap.Loader` the ops channel
(`bot.channels.ops`) gives its `ReleaseWatcher`. For a release that names a
Rasa model archive other than the one served, on the watcher's worker thread
it checks the archive (`core.model_check.check_model`: a broken file is named) and
builds a new `MessageProcessor` for it, which loads the whole graph (intent
classifier, retriever, policies) while the served processor keeps answering.
The returned switch, run on the event loop, does what Rasa's
`Agent.load_model` does after building its processor (processor, domain,
fingerprint, the tracker store's and the response generator's domain), in
one step with no await between, so a message already inside the old
processor finishes there and every later one meets the new. Both
`Agent.load_model` and the whole `rasa.core.processor` module are hashed in
`bot.rasa_shim.STUDIED_SOURCES` (with `Agent._set_fingerprint`): a Rasa whose
source differs refuses to start.

The graph's components register their prefetchers (`core.serving`) while
they load; the served model's stay in force until the switch, which installs
the new set at once, so the old graph is not kept alive by its prefetchers.
After the switch the new graph is frozen out of the garbage collector's
sight (`keep_out_of_collections`), as the first was at start; the old one is
freed by reference counting once its last message is answered.

A release that promotes the answer index gets a new processor too (of the
served archive when the release names no other), because the retriever reads
its index when its graph loads: the new index is in service from the same
switch as the version reported on ``/health``, not up to the retriever's own
``RELOAD_CHECK_SECONDS`` later. A release of the recommender alone needs no
new processor: the customer pages' recommender (`bot.insight.profile`) is
reloaded on next use, the action server reloads its own.
"""
from __future__ import annotations

import gc
import logging
from pathlib import Path
from typing import Any, Callable, Optional

from core import serving
from core.hotswap import Loader, Switch
from core.releases import Release, archive_path

logger = logging.getLogger(__name__)


def _same_file(a: Path, b: Optional[Path]) -> bool:
    try:
        return b is not None and a.resolve() == Path(b).resolve()
    except OSError:
        return False


def install_processor(agent: Any, processor: Any) -> None:
    """Put `processor` in service in `agent`: the assignments of Rasa's `Agent.load_model`, nothing awaited."""
    from rasa.core.nlg import TemplatedNaturalLanguageGenerator

    agent.processor = processor
    agent.domain = processor.domain
    agent._set_fingerprint(None)
    agent.tracker_store.domain = agent.domain
    if isinstance(agent.nlg, TemplatedNaturalLanguageGenerator):
        agent.nlg.responses = agent.domain.responses if agent.domain else {}


def build_processor(agent: Any, path: Path) -> Any:
    """A new `MessageProcessor` for the archive at `path`, sharing `agent`'s stores, endpoint and generator."""
    from rasa.core.processor import MessageProcessor

    return MessageProcessor(
        model_path=path, tracker_store=agent.tracker_store, lock_store=agent.lock_store,
        action_endpoint=agent.action_endpoint, generator=agent.nlg, http_interpreter=agent.http_interpreter,
    )


def check_archive(path: Path) -> None:
    """Read the whole archive first (`core.model_check.check_model`): a missing, truncated or broken file is named."""
    from core.model_check import check_model

    check_model(path)


def keep_out_of_collections() -> None:
    """Freeze the new graph out of the garbage collector's sight, as `core.serving.settle_heap` did at start.

    Only `gc.freeze` (no pause): the old graph needs no collection to be
    freed. Measured on the demo model, dropping an old processor leaves no
    objects in reference cycles, so reference counting frees it, frozen or
    not; a full collection here (unfreeze, collect, freeze) stopped the event
    loop for 0.5 s under load for nothing.
    """
    gc.freeze()


def _forget_page_recommender() -> None:
    from bot.insight import profile

    profile.use_recommender(None)  # the customer pages load the promoted recommender on next use


def rasa_loader(get_agent: Callable[[], Any]) -> Loader:
    """The `Loader` of a Rasa server whose agent `get_agent()` returns (see the module docstring)."""

    def load(release: Release) -> Switch:
        agent = get_agent()
        if agent is None or agent.processor is None:
            raise RuntimeError("the Rasa server has no model loaded yet")
        served_path = Path(agent.processor.model_path) if agent.processor.model_path else None
        path = archive_path(release.rasa_model) if release.rasa_model else served_path
        # The retriever reads its index when its graph loads: a promoted index comes with a new graph
        # (of the served archive if the release names none), so the version on /health and the answers switch together.
        if path is None or (_same_file(path, served_path) and "index" not in release.parts):
            return _forget_page_recommender
        check_archive(path)
        served = serving.prefetchers()
        try:
            processor = build_processor(agent, path)
        finally:
            fresh = {key: fn for key, fn in serving.prefetchers().items() if served.get(key) is not fn}
            serving.use_prefetchers(served)  # the served model's, until the switch

        def switch() -> None:
            install_processor(agent, processor)
            serving.use_prefetchers(fresh)
            _forget_page_recommender()
            keep_out_of_collections()
            logger.info("Rasa model %s in service (%d objects frozen out of garbage collection)", path.name,
                        gc.get_freeze_count())

        return switch

    return load
