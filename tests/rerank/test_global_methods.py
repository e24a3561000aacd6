"""Query expansion, database-side augmentation and diffusion: hand-computed cases of the pure
functions, then each method against the plain global descriptor on the real Paris queries."""
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import pytest
from conftest import REPO, TOLERANCE

from core.config import PLAIN_GEM
from core.evaluation.pipeline import RunOptions, evaluate
from core.index.annoy import AnnoyIndex, AnnoyParams
from core.rerank import RERANKERS, PreparedStore, RerankContext, create_reranker, list_rerankers, rank_by_scores
from core.rerank.diffusion import diffusion_scores, knn_affinity
from core.rerank.expansion import DBA, database_augmentation, query_expansion, weighted_neighbour_mean

QUIET = dict(options=RunOptions(progress=False, log=lambda m: None))


def unit(*rows):
    x = np.array(rows, np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_average_query_expansion_is_the_normalised_sum_of_query_and_top_n():
    db = unit([1, 0], [0, 1], [1, 1])
    q = unit([1, 0])
    out = query_expansion(q, db, np.array([[2, 0, 1]]), n=1)            # adds db[2] = (0.707, 0.707)
    expected = np.array([1 + 0.70710678, 0.70710678])
    np.testing.assert_allclose(out[0], expected / np.linalg.norm(expected), atol=1e-6)
    np.testing.assert_allclose(query_expansion(q, db, np.array([[2, 0, 1]]), n=0), q)


def test_alpha_qe_weights_neighbours_by_similarity_power_and_ignores_negative_ones():
    q = unit([1, 0])
    neighbours = unit([1, 1], [-1, 0.2])[None]                          # cosines 0.707 and < 0
    out = weighted_neighbour_mean(q, neighbours, alpha=2.0)
    expected = np.array([1, 0]) + 0.5 * np.array([0.70710678, 0.70710678])   # 0.707^2 = 0.5, negative: 0
    np.testing.assert_allclose(out[0], expected / np.linalg.norm(expected), atol=1e-6)


def test_dba_averages_each_vector_with_its_nearest_other_vector():
    db = unit([1, 0], [0.9, 0.1], [0, 1])
    out = database_augmentation(db, n=1, alpha=0.0)
    for i, j in ((0, 1), (1, 0), (2, 1)):                               # nearest other row of each
        expected = db[i] + db[j]
        np.testing.assert_allclose(out[i], expected / np.linalg.norm(expected), atol=1e-6)


def test_knn_affinity_keeps_mutual_neighbours_only():
    db = unit([1, 0], [0.95, 0.05], [0.9, 0.2], [0, 1])
    a = knn_affinity(db, k=1, gamma=1.0).toarray()
    # 0 and 1 are each other's nearest; 2's nearest is 1 but 1's is 0; 3's nearest is 2, not back
    assert a[0, 1] == a[1, 0] > 0
    assert np.count_nonzero(a) == 2 and np.all(np.diag(a) == 0)


def test_diffusion_reaches_the_far_end_of_a_chain_before_a_closer_outsider():
    # a chain of views turning away from the query, and one outsider closer to the query than
    # the chain's far end: the random walk follows the chain
    angles = np.radians([0, 15, 30, 45, 60, 75])
    chain = np.stack([np.cos(angles), np.sin(angles), np.zeros(6)], 1)
    outsider = unit([0.3, -0.2, 0.93])
    db = np.vstack([chain, outsider]).astype(np.float32)
    q = db[:1]
    affinity = knn_affinity(db, k=2, gamma=1.0)
    scores = diffusion_scores(q, db, affinity, k=2, alpha=0.99, gamma=1.0)
    assert q[0] @ db[6] > q[0] @ db[5]                                   # plain cosine prefers the outsider
    assert scores[0, 5] > scores[0, 6]


def test_rank_by_scores_breaks_ties_by_the_previous_ranking():
    scores = np.array([[0.0, 2.0, 0.0, 1.0]])
    assert rank_by_scores(scores, np.array([[2, 0, 3, 1]])).tolist() == [[1, 3, 2, 0]]


def test_each_method_owns_its_parameters_and_refuses_others():
    s = create_reranker("dba+alpha_qe", qe_n=3, dba_n=4, alpha=2)
    assert s.label() == "dba4+aqe3a2"
    assert s.params() == {"method": "dba+alpha_qe", "dba_n": 4, "qe_n": 3, "alpha": 2}
    assert create_reranker("none").label() == ""
    with pytest.raises(ValueError, match="has no parameter top_n"):
        create_reranker("alpha_qe", top_n=3)
    with pytest.raises(ValueError, match="must be one of"):
        create_reranker("magic")


def test_the_registry_lists_every_method_once_with_its_title():
    names = list_rerankers()
    assert names[0] == "none" and len(names) == len(set(names)) == len(RERANKERS)
    assert {"aqe", "alpha_qe", "dba", "dba+alpha_qe", "diffusion", "blcf", "local", "spatial"} <= set(names)
    assert all(RERANKERS[n].title for n in names)
    assert [n for n in names if RERANKERS[n].needs_image] == ["blcf", "local", "spatial"]


def test_prepared_parts_are_built_once_for_concurrent_callers(paris, tmp_path):
    store, calls = PreparedStore(), []

    @dataclass(frozen=True)
    class Counting(DBA):
        def prepare(self, ctx):
            calls.append(1)
            return super().prepare(ctx)

    ctx = RerankContext(paris.emb, paris.gallery, paris.embedder)
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda _: store.get(Counting(), ctx)[0], range(8)))
    assert len(calls) == 1 and all(g is got[0] for g in got)
    # lists from an Annoy index make another graph than exact ones: prepared apart, once
    annoy = AnnoyIndex.build(replace(paris.emb, directory=tmp_path), "cosine", AnnoyParams())
    approximate = replace(ctx, index=annoy)
    assert approximate.neighbour_source().endswith(".ann") and ctx.neighbour_source() == "exact"
    assert store.get(Counting(), approximate)[0] is not got[0] and len(calls) == 2
    assert store.get(Counting(), approximate)[1] == 0.0 and len(calls) == 2


@pytest.mark.parametrize("method", ["aqe", "alpha_qe", "dba", "dba+alpha_qe", "diffusion"])
def test_method_changes_the_rankings_and_keeps_paris_map(method, paris):
    ranking = paris.rerank(create_reranker(method))
    assert (ranking[:, :50] != paris.ranking[:, :50]).any(), "the method returned the plain ranking"
    plain, reranked = paris.map(paris.ranking), paris.map(ranking)
    assert reranked >= plain - TOLERANCE, (method, reranked, plain)


def test_evaluate_records_the_method_and_names_the_run_after_it(paris, paris_gt):
    reranker = create_reranker("dba+alpha_qe", dba_n=5, qe_n=5)
    s = evaluate(paris.gallery, paris_gt, PLAIN_GEM, embedder=paris.embedder, rerank=reranker, **QUIET)
    assert s.rerank.label == "dba5+aqe5a3" and s.rerank.extra_ms_per_query > 0
    assert "-exact-dba5-aqe5a3-" in s.run_id
    assert s.map == pytest.approx(paris.rerank_map(reranker))


def test_metrics_page_filters_runs_by_method(paris, paris_gt):
    from streamlit.testing.v1 import AppTest

    run = evaluate(paris.gallery, paris_gt, PLAIN_GEM, embedder=paris.embedder,
                   rerank=create_reranker("aqe", qe_n=5), **QUIET)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300).run()
    at.switch_page("pages/metrics.py").run()
    at.multiselect(key="f_rerank").set_value(["aqe5"]).run()
    assert not at.exception
    table = at.dataframe[0].value
    assert table["run_id"].tolist() == [run.run_id] and table["rerank_ms"].iloc[0] >= 0
