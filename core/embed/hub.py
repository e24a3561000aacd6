"""timm's pretrained weights from its hub, with a socket probe so that a machine without network
fails at once instead of retrying for about 45 s."""
from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from core.embed.specs import BackboneSpec, WeightsUnavailable, list_backbones

HUB_ADDRESS = ("huggingface.co", 443)
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def _reachable(address: tuple[str, int], timeout: float = 3.0) -> bool:
    try:
        socket.create_connection(address, timeout=timeout).close()
        return True
    except OSError:
        return False


@contextmanager
def _hub_cache_only_when_unreachable() -> Iterator[None]:
    """Without network, huggingface_hub retries each candidate file five times with back-off
    (about 45 s for one network) before it gives up. When its host cannot be reached directly in
    3 s and no proxy is configured, ask it for its local cache only: cached weights still load,
    and missing ones fail at once."""
    if any(os.environ.get(v) for v in PROXY_VARIABLES) or _reachable(HUB_ADDRESS):
        yield
        return
    try:
        from huggingface_hub import constants
    except ImportError:
        yield
        return
    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def timm_hub(spec: BackboneSpec) -> nn.Module:
    """timm's pretrained weights (its hub or release URL); any failure to fetch them, as without
    network, is a ``WeightsUnavailable`` that says what else works."""
    try:
        with _hub_cache_only_when_unreachable():
            return spec.build(pretrained=True)
    except Exception as exc:  # noqa: BLE001 - hub clients raise many types (OSError, httpx, hub errors)
        raise WeightsUnavailable(
            f"could not fetch timm's pretrained weights of {spec.name} ({type(exc).__name__}: {exc}). They are "
            f"downloaded from the internet on first use; without network use weights='offline' with one of "
            f"{', '.join(list_backbones(True))}, or pass a checkpoint path.") from exc

