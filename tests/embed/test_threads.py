"""The small PyTorch work around an OpenVINO network runs on one intra-op thread of the calling
thread, and the caller's setting comes back afterwards (issue 22)."""
import torch

from core.embed.embedder import torch_threads


def test_torch_threads_sets_the_count_for_the_block_and_restores_it():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch_threads(1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        try:
            with torch_threads(1):
                raise KeyError("inside")
        except KeyError:
            pass
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
