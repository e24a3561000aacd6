"""Failure analysis of one ranking and of two runs, against hand-computed ranks."""
from core.app.failures import analyse_ranking, failure_reason, rank_moves
from core.datasets import Query

QUERY = Query(name="q_1", image="a", box=None, positives=frozenset({"a", "c", "f"}), junk=frozenset({"d"}))
IDS = ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg", "g.jpg"]
RANKING = [1, 0, 3, 4, 2, 6, 5]          # b a d e c g f: ranks b1 a2 d3(junk) e4 c5 g6 f7


def test_positives_are_placed_with_the_negatives_above_them():
    f = analyse_ranking(QUERY, RANKING, IDS, k=3)
    assert [(p.image_id, p.rank, p.negatives_above) for p in f.positives] == [
        ("a.jpg", 2, 1), ("c.jpg", 5, 2), ("f.jpg", 7, 3)]
    assert [p.image_id for p in f.found] == ["a.jpg"]
    assert [(p.image_id, p.rank) for p in f.missed] == [("c.jpg", 5), ("f.jpg", 7)]


def test_found_is_judged_at_the_number_of_relevant_images_by_default():
    f = analyse_ranking(QUERY, RANKING, IDS)
    assert f.k == 3 and [p.image_id for p in f.missed] == ["c.jpg", "f.jpg"]


def test_intruders_are_the_bad_images_above_the_last_positive_whatever_k():
    for k in (3, 7, None):
        f = analyse_ranking(QUERY, RANKING, IDS, k=k)
        assert [(p.image_id, p.rank, p.label) for p in f.intruders] == [
            ("b.jpg", 1, "bad"), ("e.jpg", 4, "bad"), ("g.jpg", 6, "bad")]
        assert f.n_intruders == 3
    capped = analyse_ranking(QUERY, RANKING, IDS, k=3, max_intruders=1)
    assert [p.image_id for p in capped.intruders] == ["b.jpg"] and capped.n_intruders == 3


def test_a_perfect_ranking_has_no_intruders():
    f = analyse_ranking(QUERY, [0, 2, 5, 3, 1, 4, 6], IDS)             # a c f d b e g
    assert f.missed == [] and f.intruders == [] and f.n_intruders == 0
    assert failure_reason(f).startswith("A perfect ranking: all 3 relevant images")


def test_the_reason_names_the_negatives_and_their_group():
    ids = ["x/a.jpg", "x/c.jpg", "y/b.jpg", "y/e.jpg", "z/g.jpg", "x/f.jpg"]
    query = Query(name="q", image="a", box=None, positives=frozenset({"a", "c", "f"}), junk=frozenset())
    f = analyse_ranking(query, [2, 0, 3, 1, 4, 5], ids)                # b a e c g f
    assert failure_reason(f) == "3 negatives outrank 3 of the 3 relevant images; 2 of them are y images."
    assert failure_reason(analyse_ranking(query, [2, 0, 1, 5, 3, 4], ids)) == \
        "1 negative outranks 3 of the 3 relevant images: a y image."


def test_moves_between_two_runs_largest_first():
    ranking_b = [0, 2, 1, 3, 4, 5, 6]     # a c b d e f g
    moves = rank_moves(QUERY, IDS, RANKING, IDS, ranking_b, top=2)
    assert [(m.image_id, m.rank_a, m.rank_b, m.gain, m.label) for m in moves] == [
        ("c.jpg", 5, 2, 3, "ok"), ("b.jpg", 1, 3, -2, "bad"), ("a.jpg", 2, 1, 1, "ok")]


def test_moves_match_images_by_id_across_galleries():
    ids_b = ["b.jpg", "a.jpg", "x.jpg"]   # another gallery order, without c..g, with x
    moves = rank_moves(QUERY, IDS, RANKING, ids_b, [2, 1, 0], top=2)
    by_id = {m.image_id: m for m in moves}
    assert (by_id["b.jpg"].rank_a, by_id["b.jpg"].rank_b) == (1, 3)
    assert by_id["x.jpg"].rank_a is None and by_id["x.jpg"].gain is None
    assert "a.jpg" not in by_id                          # rank 2 in both
    assert moves[-1].image_id == "x.jpg"
