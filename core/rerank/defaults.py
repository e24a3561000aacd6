"""The re-ranking that the CLI and the app apply unless told otherwise: one constant, read by both.

Chosen on the validation protocol (``python -m core validate``; README "Re-ranking"), never on
the 12 official Paris queries: the method with the largest mean gain among those that gained on
every validation set (Paris whole and cropped, Corel-1k, Fashion-MNIST) at every gallery size
swept, its neighbour counts set by ``core.rerank.rules`` from the gallery size. k-reciprocal
re-ranking reads only the head of the first ranking and builds its graph through the same
index, so it works with Annoy as with exact search.
"""
from __future__ import annotations

DEFAULT_RERANK = "kreciprocal"
