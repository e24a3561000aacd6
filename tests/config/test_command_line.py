"""``core.config.command_line``: the commands core's messages tell the user to run parse back."""
from __future__ import annotations

import shlex

from core.cli import build_parser, config_from_args
from core.config import MULTI_SCALES, EmbeddingConfig, command_line


def test_a_printed_command_parses_back_to_the_same_config():
    config = EmbeddingConfig(backbone="mobilenet_v2", pooling="gem", gem_p=4.0, scales=MULTI_SCALES, max_size=256,
                             whitening="gallery", whiten_dim=64)
    line = command_line("index", "--name g", config.cli_flags(), "")
    words = shlex.split(line)
    assert words[:3] == ["python", "-m", "core"] and "  " not in line
    assert config_from_args(build_parser().parse_args(words[3:])) == config


def test_messages_of_core_spell_the_program_through_the_helper():
    from core.cache.galleries import GalleryError, load_gallery

    try:
        load_gallery("no-such-gallery")
    except GalleryError as exc:
        assert command_line("index", "--folder PATH", "--name no-such-gallery") in str(exc)
    else:
        raise AssertionError("an unknown gallery was loaded")
