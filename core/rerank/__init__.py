"""Re-ranking after the global search, one registered class per method (``base.register``):

- ``expansion``: average QE, alpha-QE, DBA, DBA + alpha-QE (descriptor level);
- ``diffusion``: random walk on the gallery's mutual k-NN graph;
- ``blcf``: bag of local convolutional features with an inverted file;
- ``local``: best sliding window over the top-N's feature maps;
- ``spatial``: SIFT/ORB matches verified by RANSAC;
- ``kreciprocal``: Jaccard distance of k-reciprocal neighbour sets (Zhong et al. 2017);
- ``superglobal``: descriptor refinement within the query's top-M (Shao et al. 2023).

``rules`` sets neighbour counts from the gallery size.

``create_reranker(name, **params)`` builds one; ``apply_reranker`` runs it over rankings.
"""
from core.rerank import (  # noqa: F401 (each registers its methods)
    blcf,
    diffusion,
    expansion,
    kreciprocal,
    local,
    spatial,
    superglobal,
)
from core.rerank.base import (
                              RERANKERS,
                              Evidence,
                              PreparedStore,
                              RegionQuery,
                              RerankContext,
                              Reranker,
                              RerankOutput,
                              apply_reranker,
                              create_reranker,
                              list_rerankers,
                              rank_by_scores,
                              register,
                              reranker_parameters,
)
from core.rerank.defaults import DEFAULT_RERANK, FALLBACK_RERANK, Fitted, fitting

__all__ = ["DEFAULT_RERANK", "FALLBACK_RERANK", "Fitted", "fitting", "RERANKERS", "Evidence", "PreparedStore", "RegionQuery", "RerankContext", "RerankOutput", "Reranker",
           "apply_reranker", "create_reranker", "list_rerankers", "rank_by_scores", "register", "reranker_parameters"]
