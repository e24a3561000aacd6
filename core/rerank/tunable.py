"""The re-ranking parameters a user may set, declared on the methods' own dataclass fields.

A method marks a field ``tunable(default, help)``; ``tunable_parameters()`` collects every
marked field of the registered methods, once per name, so that the CLI generates one flag per
parameter from the registry instead of keeping a list by hand. A name shared by several methods
(``top_n``, ``fusion``, ``alpha``, ``qe_n``) is one flag that sets it in whichever method is
chosen; its help is written once, on one of those fields.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from core.rerank.base import RERANKERS, list_rerankers

RULE = "default 0: by the gallery-size rule, core/rerank/rules.py"
_TYPES = {"int": int, "float": float, "str": str}


def tunable(default: Any, help: str = "", choices: tuple[str, ...] | None = None) -> Any:
    """A dataclass field a user may set (``--name-with-dashes`` on the command line); ``help``
    may name ``{default}``, formatted with the field's default."""
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class TunableParameter:
    """One settable parameter: its field name, type (int, float or str), help and choices."""

    name: str
    type: type
    help: str
    choices: tuple[str, ...] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def tunable_parameters() -> list[TunableParameter]:
    """Every tunable field of the registered methods, once per name, in registry order
    (``list_rerankers``), with the help and choices of the one field of that name that has them."""
    found: dict[str, TunableParameter] = {}
    for name in list_rerankers():
        for f in fields(RERANKERS[name]):
            if "help" in f.metadata and (f.name not in found or not found[f.name].help):
                kind = f.type if isinstance(f.type, type) else _TYPES[f.type]
                found[f.name] = TunableParameter(f.name, kind, f.metadata["help"].format(default=f.default),
                                                 f.metadata["choices"])
    return list(found.values())
