"""The node library: ComfyUI's core text-to-image nodes under their class names and inputs, so exported
API-format workflows run unchanged, plus glassforge's own."""

from __future__ import annotations

from functools import cache

from ..registry import NodeRegistry


@cache
def core_nodes() -> NodeRegistry:
    from . import explain, images, loaders, sampling

    reg = NodeRegistry()
    for module in (loaders, sampling, images, explain):
        module.register(reg)
    return reg
