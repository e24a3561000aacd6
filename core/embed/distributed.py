"""Gallery extraction on a Dask cluster, behind the same ``build_embeddings`` and cache.

``DaskEmbedder`` has the ``iter_files`` of ``core.embed.embedder.Embedder``: the paths go to the cluster
in chunks, each Dask worker process builds the network once and embeds the chunks it is given,
and the (position, descriptor or failure) pairs stream back as chunks finish, so the caller
(``core.cache.descriptors.build_embeddings``) checkpoints and writes the very same cache as a local run.

Without a scheduler address a ``LocalCluster`` of ``n_workers`` single-threaded processes is
started on this machine (what the tests use); with one (``tcp://host:8786``), the chunks run on
that cluster. The workers read the images by the paths the client gives, so the gallery folder
must be mounted at the same path on every worker, and they need this project and its
requirements installed (the same environment as the client).

Dask rather than Ray: ``dask[distributed]`` is a 2.5 MB pure-Python install beside the
existing NumPy/PyTorch stack, against Ray's 60+ MB wheel with its own object store and
dashboard processes; a chunked map of files to vectors needs none of Ray's extras.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from tqdm.auto import tqdm

from core.config import EmbeddingConfig

CHUNK_SIZE = 32          # images per task: large enough to amortise scheduling, small enough to balance

_WORKER_EMBEDDERS: dict[str, object] = {}


def _embed_chunk(config: EmbeddingConfig, paths: list[str], backend: str | None) -> list[tuple[int, np.ndarray | str]]:
    """Runs in a Dask worker: embed ``paths`` with this process's embedder of ``config``."""
    from core.embed.embedder import Embedder

    key = f"{config.key()}-{backend}"
    if key not in _WORKER_EMBEDDERS:
        _WORKER_EMBEDDERS[key] = Embedder(config, threads=1, backend=backend)
    return list(_WORKER_EMBEDDERS[key].iter_files(paths, workers=0, progress=False))


class DaskEmbedder:
    """Embeds file lists on a Dask cluster (a local one of ``n_workers`` processes when
    ``scheduler`` is None). Use as a context manager, or call ``close``."""

    def __init__(self, config: EmbeddingConfig, scheduler: str | None = None, n_workers: int = 2,
                 chunk_size: int = CHUNK_SIZE, backend: str | None = None) -> None:
        from dask.distributed import Client, LocalCluster

        self.config, self.chunk_size, self.backend = config, chunk_size, backend
        self._cluster = None if scheduler else LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None)
        self.client = Client(scheduler or self._cluster)

    def __enter__(self) -> DaskEmbedder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()

    @property
    def n_workers(self) -> int:
        return len(self.client.scheduler_info()["workers"])

    def iter_files(self, paths: Sequence[str], workers: int | None = None, desc: str = "embedding",
                   progress: bool = True) -> Iterator[tuple[int, np.ndarray | str]]:
        """Yield (position, descriptor or failure reason) once for each path, chunk by chunk as
        the cluster finishes them. ``workers`` is accepted for ``Embedder`` compatibility and
        ignored: the cluster's processes do the decoding."""
        from dask.distributed import as_completed

        del workers
        starts = range(0, len(paths), self.chunk_size)
        futures = {self.client.submit(_embed_chunk, self.config, list(paths[s:s + self.chunk_size]), self.backend,
                                      pure=False): s for s in starts}
        bar = tqdm(total=len(paths), desc=f"{desc} (dask, {self.n_workers} workers)", unit="img",
                   disable=not progress, dynamic_ncols=True)
        try:
            for future in as_completed(futures):
                start = futures[future]
                for i, out in future.result():
                    yield start + i, out
                    bar.update(1)
        finally:
            for future in futures:
                future.cancel()
            bar.close()
