"""The command line's structure: one module per command, shared blocks declared once, and the
re-ranking flags generated from the re-rankers' own parameter fields."""
from __future__ import annotations

import argparse
from dataclasses import dataclass, fields

import pytest

from core.cli import COMMANDS, build_parser, main
from core.cli.options import rerank_from_args
from core.rerank import RERANKERS, Reranker, list_rerankers, register
from core.rerank.tunable import tunable, tunable_parameters


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def test_every_command_runs_the_handler_of_its_own_module():
    parser = build_parser()
    def command_of(module):
        return getattr(module, "COMMAND", module.__name__.rsplit(".", 1)[1])

    assert list(subcommands(parser)) == [command_of(m) for m in COMMANDS]
    minimal = {"evaluate": ["--dataset", "paris6k", "--root", "x"], "index": ["--name", "g"],
               "search": ["q.jpg", "--name", "g"], "train": ["--root", "r", "--name", "m"],
               "import": ["--name", "g", "--vectors", "v.npy"]}
    for module in COMMANDS:
        name = command_of(module)
        if name == "data":
            continue
        args = parser.parse_args([name, *minimal.get(name, [])])
        assert args.run is module.run, name


def test_each_data_action_has_its_own_handler():
    parser = build_parser()
    runs = {action: parser.parse_args(["data", action, *extra]).run.__name__
            for action, extra in (("list", []), ("fetch", ["paris6k"]), ("split", ["--root", "r", "--out", "o",
                                                                                   "--per-class", "1"]),
                                  ("export-cifar10", ["--out", "o"]), ("export-fashion-mnist", ["--out", "o"]))}
    assert runs == {"list": "run_list", "fetch": "run_fetch", "split": "run_split", "export-cifar10": "run_export",
                    "export-fashion-mnist": "run_export"}


def test_every_tunable_parameter_is_a_flag_of_the_reranking_commands_with_one_help():
    params = tunable_parameters()
    assert params and all(p.help for p in params)
    assert len({p.name for p in params}) == len(params)
    sub = subcommands(build_parser())
    for command in ("evaluate", "validate", "search"):
        assert {p.flag for p in params} <= option_strings(sub[command]), command
    for command in ("index", "quantize", "train"):
        assert not {p.flag for p in params} & option_strings(sub[command]), command


def test_a_tunable_field_of_every_method_is_reachable_and_untunable_ones_are_not():
    names = {p.name for p in tunable_parameters()}
    for method in list_rerankers():
        for f in fields(RERANKERS[method]):
            assert (f.name in names) == ("help" in f.metadata), (method, f.name)


def test_a_newly_registered_method_gets_its_flag_without_touching_the_cli():
    @register("toy_rerank", "toy")
    @dataclass(frozen=True)
    class Toy(Reranker):
        toy_depth: int = tunable(7, "toy depth (default {default})")

    try:
        parser = build_parser()
        search = subcommands(parser)["search"]
        assert "--toy-depth" in option_strings(search)
        assert "toy depth (default 7)" in search.format_help()
        args = parser.parse_args(["search", "q.jpg", "--name", "g", "--rerank", "toy_rerank", "--toy-depth", "3",
                                  "--k1", "9"])
        assert rerank_from_args(args) == Toy(toy_depth=3)          # --k1 is not Toy's: left out
    finally:
        del RERANKERS["toy_rerank"]


def test_given_flags_reach_the_chosen_method_and_others_keep_their_defaults():
    parser = build_parser()
    args = parser.parse_args(["search", "q.jpg", "--name", "g", "--rerank", "spatial", "--top-n", "20",
                              "--local-features", "orb", "--qe-n", "4"])
    reranker = rerank_from_args(args)
    assert (reranker.name, reranker.top_n, reranker.local_features) == ("spatial", 20, "orb")
    assert reranker.fusion == type(reranker)().fusion


def test_a_refused_choice_of_a_generated_flag_is_one_argparse_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["search", "q.jpg", "--name", "g", "--local-features", "surf"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--local-features: invalid choice: 'surf'" in err and "Traceback" not in err
