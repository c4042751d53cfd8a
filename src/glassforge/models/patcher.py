"""The UNet patcher: one shared diffusers UNet, patches kept as data on cheap clones (Forge's UnetPatcher).

``UNetPatcher(unet)`` holds the loaded ``UNet2DConditionModel``; ``with_patch(...)`` returns a new clone
with more patches and the same module. Patches are frozen dataclasses attached at named hook points
(Forge's setters, shared/reference/a1111_forge.md §7.2) with typed arguments instead of an options dict:

* ``attn1_input`` / ``attn2_input`` — :class:`AttentionInputPatch`: ``fn(hidden, context, AttentionArgs)
  → (hidden, context)`` before the attention layer.
* ``attn1_replace`` / ``attn2_replace`` — :class:`AttentionReplace`: ``fn(q, k, v, AttentionArgs) → out``
  in place of the attention op; q, k, v and out are [B, tokens, heads·dim].
* ``attn1_output`` / ``attn2_output`` — :class:`AttentionOutputPatch`: ``fn(out, AttentionArgs) → out``.
* ``attn1_observer`` / ``attn2_observer`` — :class:`AttentionObserver`: ``fn(AttentionMaps)``, the
  probabilities [B·heads, query tokens, key tokens] with the block and the query resolution.
* ``input_block`` — :class:`InputBlockPatch`: ``fn(h, BlockArgs) → h`` on each input block's output
  (before it is kept as a skip).
* ``output_block`` — :class:`OutputBlockPatch`: ``fn(h, skip, BlockArgs) → (h, skip)`` before each
  output block's concat (FreeU).
* ``pre_cfg`` / ``cfg_function`` / ``post_cfg`` — :class:`PreCFG`, :class:`CFGFunction`, :class:`PostCFG`:
  the guider's hooks (:class:`~glassforge.sampling.guidance.CFGHooks`, from :meth:`UNetPatcher.cfg_hooks`).
* ``weights`` — :class:`WeightPatch`: key → strength·delta and/or a function, applied to copies.

attn1 is self-attention, attn2 cross-attention. Blocks are numbered as in the original (LDM) UNet, as
Forge's ``transformer_options["block"]``: ("input", i), ("middle", 0), ("output", i); an attention site
is (block, transformer index within that block). Patches apply only inside :meth:`UNetPatcher.session`:
on entry it registers forward (pre-)hooks and swaps in attention processors, on exit it removes them,
also after an exception; weights are overridden per call with ``torch.func.functional_call``. The
shared module is never left modified and its parameters never written. Sessions on one module are
serialised by a lock, so clones can be used from several threads (calls to the bare module cannot).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..sampling.guidance import CFGArgs, CFGHooks, PostCFGArgs, PreCFGArgs
from .patch_points import (
    AttentionArgs,
    AttentionMaps,
    AttentionSite,
    BlockArgs,
    BlockRef,
    CallInfo,
    PatchError,
    ReplacingProcessor,
    UNetLayout,
    attention_input_hook,
    attention_output_hook,
    attention_probabilities,
    input_block_hook,
    observer_hook,
    output_block_hook,
    resolution_hook,
    scaled_dot_product_attention,
    unet_layout,
)

__all__ = [
    "AttentionArgs", "AttentionInputPatch", "AttentionMaps", "AttentionObserver", "AttentionOutputPatch",
    "AttentionReplace", "AttentionSite", "BlockArgs", "BlockRef", "CFGFunction", "CallInfo", "InputBlockPatch",
    "OutputBlockPatch", "Patch", "PatchError", "PatchedCall", "PostCFG", "PreCFG", "UNetLayout", "UNetPatcher",
    "WeightPatch", "attention_probabilities", "scaled_dot_product_attention", "unet_layout",
]  # fmt: skip


# ---- the patches ------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Patch:
    """Common to every patch: a label for listings and the infotext pairs it records (Forge's
    ``extra_generation_params``)."""

    label: str = ""
    infotext: tuple[tuple[str, Any], ...] = ()
    point = ""  # the hook point name (attention patches: attn1_… / attn2_… by kind)

    @property
    def hook_point(self) -> str:
        return self.point


@dataclass(frozen=True, kw_only=True)
class _AttentionPatch(Patch):
    kind: str = "cross"
    # Forge's keys (block name, block number, transformer index) to attach at; None = every layer
    sites: frozenset[tuple[str, int, int]] | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("self", "cross"):
            raise PatchError(f"attention patch kind must be 'self' or 'cross', got {self.kind!r}")
        if self.sites is not None:
            object.__setattr__(self, "sites", frozenset(tuple(s) for s in self.sites))

    @property
    def hook_point(self) -> str:
        return f"attn{1 if self.kind == 'self' else 2}_{self.point}"

    def applies_to(self, site: AttentionSite) -> bool:
        return site.kind == self.kind and (self.sites is None or site.key in self.sites)


@dataclass(frozen=True)
class AttentionInputPatch(_AttentionPatch):
    fn: Callable[[Tensor, Tensor | None, AttentionArgs], tuple[Tensor, Tensor | None]]
    point = "input"


@dataclass(frozen=True)
class AttentionReplace(_AttentionPatch):
    """Replaces the attention op after the q/k/v projections; the last one matching a site wins."""

    fn: Callable[[Tensor, Tensor, Tensor, AttentionArgs], Tensor]
    point = "replace"


@dataclass(frozen=True)
class AttentionOutputPatch(_AttentionPatch):
    fn: Callable[[Tensor, AttentionArgs], Tensor]
    point = "output"


@dataclass(frozen=True)
class AttentionObserver(_AttentionPatch):
    """Receives each matching layer's attention probabilities; never changes the output."""

    fn: Callable[[AttentionMaps], None]
    point = "observer"


@dataclass(frozen=True)
class InputBlockPatch(Patch):
    fn: Callable[[Tensor, BlockArgs], Tensor]
    point = "input_block"


@dataclass(frozen=True)
class OutputBlockPatch(Patch):
    fn: Callable[[Tensor, Tensor, BlockArgs], tuple[Tensor, Tensor]]
    point = "output_block"


@dataclass(frozen=True)
class PreCFG(Patch):
    fn: Callable[[PreCFGArgs], PreCFGArgs]
    point = "pre_cfg"


@dataclass(frozen=True)
class CFGFunction(Patch):
    """Replaces the CFG combine; the last one set wins (Forge's ``set_model_sampler_cfg_function``)."""

    fn: Callable[[CFGArgs], Tensor]
    point = "cfg_function"


@dataclass(frozen=True)
class PostCFG(Patch):
    fn: Callable[[PostCFGArgs], Tensor]
    disable_cfg1_optimization: bool = False
    point = "post_cfg"


@dataclass(frozen=True, eq=False)
class WeightPatch(Patch):
    """``weight' = function(weight + strength·delta)`` (either part optional), computed in float32 on a
    copy and cast back to the weight's dtype; several patches on one key apply in order."""

    key: str  # a parameter or buffer name of the diffusers UNet, e.g. "conv_in.weight"
    delta: Tensor | None = None
    function: Callable[[Tensor], Tensor] | None = None
    strength: float = 1.0
    point = "weights"
    __eq__ = object.__eq__  # tensors inside: identity, not Patch's field comparison
    __hash__ = object.__hash__

    def apply(self, weight: Tensor) -> Tensor:
        w = weight.detach().float()
        if self.delta is not None:
            w = w + self.strength * self.delta.to(device=w.device, dtype=torch.float32)
        if self.function is not None:
            w = self.function(w.clone())
        return w.to(weight.dtype)


_HOOKED = (_AttentionPatch, InputBlockPatch, OutputBlockPatch)


class _Shared:
    """Per shared module: the lock that serialises sessions and the cached layout."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.layout: UNetLayout | None = None


_SHARED: weakref.WeakKeyDictionary[nn.Module, _Shared] = weakref.WeakKeyDictionary()
_SHARED_LOCK = threading.Lock()


def _shared(model: nn.Module) -> _Shared:
    with _SHARED_LOCK:
        if model not in _SHARED:
            _SHARED[model] = _Shared()
        return _SHARED[model]


# ---- the patcher ---------------------------------------------------------------------------------------


class PatchedCall:
    """The shared UNet with a clone's patches in place; call it like the diffusers UNet. ``rows`` and
    ``batch`` say which rows of the caller's batch this call holds (for :class:`CallInfo`)."""

    def __init__(self, model: nn.Module, weights: dict[str, Tensor]):
        self.model, self.weights = model, weights
        self.info: CallInfo | None = None
        self.query_shape: tuple[int, int] = (0, 0)

    def __call__(
        self, sample: Tensor, timestep, *args, rows: range | None = None, batch: int | None = None, **kwargs
    ):
        n = sample.shape[0]
        t = torch.as_tensor(timestep)
        self.info = CallInfo(t, rows if rows is not None else range(n), batch if batch is not None else n)
        if self.weights:
            return torch.func.functional_call(self.model, self.weights, (sample, timestep, *args), kwargs)
        return self.model(sample, timestep, *args, **kwargs)


class UNetPatcher:
    """A shared diffusers UNet and a tuple of patches. Cloning shares the module and copies the tuple."""

    def __init__(self, model: nn.Module, patches: Iterable[Patch] = ()):
        self.model = model
        self.patches: tuple[Patch, ...] = ()
        self._weights_cache: tuple[tuple, dict[str, Tensor]] | None = None
        for p in patches:
            self._check(p)
            self.patches += (p,)

    # ---- data

    def clone(self) -> UNetPatcher:
        new = UNetPatcher(self.model)
        new.patches = self.patches
        return new

    def with_patch(self, *patches: Patch) -> UNetPatcher:
        """A new clone with ``patches`` appended (this one is unchanged)."""
        for p in patches:
            self._check(p)
        new = self.clone()
        new.patches = self.patches + tuple(patches)
        return new

    def without(self, *kinds: type[Patch]) -> UNetPatcher:
        """A new clone without the patches of the given types."""
        new = self.clone()
        new.patches = tuple(p for p in self.patches if not isinstance(p, kinds))
        return new

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def layout(self) -> UNetLayout:
        shared = _shared(self.model)
        if shared.layout is None:
            shared.layout = unet_layout(self.model)
        return shared.layout

    def infotext(self) -> dict[str, Any]:
        """The infotext keys the patches record, in patch order (FreeU: ``freeu_enabled``, ``freeu_b1``, …)."""
        out: dict[str, Any] = {}
        for p in self.patches:
            out.update(p.infotext)
        return out

    def cfg_hooks(self) -> CFGHooks | None:
        """The CFG-stage functions for the guider (None when the clone has none)."""
        pre = tuple(p.fn for p in self.patches if isinstance(p, PreCFG))
        combine = [p.fn for p in self.patches if isinstance(p, CFGFunction)]
        post = [p for p in self.patches if isinstance(p, PostCFG)]
        if not (pre or combine or post):
            return None
        disable = any(p.disable_cfg1_optimization for p in post)
        return CFGHooks(pre, combine[-1] if combine else None, tuple(p.fn for p in post), disable)

    def __repr__(self) -> str:
        listed = ", ".join(f"{p.label or type(p).__name__} ({p.hook_point})" for p in self.patches)
        return f"UNetPatcher({type(self.model).__name__}, patches: {listed or 'none'})"

    def _check(self, p: Patch) -> None:
        if not isinstance(p, Patch):
            raise PatchError(
                f"expected a patch (AttentionObserver, OutputBlockPatch, WeightPatch, …), got {p!r}"
            )
        if isinstance(p, _HOOKED):
            self.layout  # noqa: B018 - raises for a module that is not a diffusers UNet
        if isinstance(p, WeightPatch):
            target = dict(self.model.named_parameters()).get(p.key)
            if target is None:
                target = dict(self.model.named_buffers()).get(p.key)
            if target is None:
                raise PatchError(
                    f"weight patch: {p.key!r} is not a UNet parameter; expected a name like 'conv_in.weight'"
                )
            if p.delta is not None and p.delta.shape != target.shape:
                raise PatchError(
                    f"weight patch {p.key}: delta shape {tuple(p.delta.shape)} != weight shape {tuple(target.shape)}"
                )

    # ---- application

    def _weights(self) -> dict[str, Tensor]:
        patches = [p for p in self.patches if isinstance(p, WeightPatch)]
        if not patches:
            return {}
        named = {**dict(self.model.named_parameters()), **dict(self.model.named_buffers())}
        signature = tuple(
            (p.key, named[p.key].data_ptr(), named[p.key].dtype, named[p.key].device) for p in patches
        )
        if self._weights_cache is None or self._weights_cache[0] != signature:
            out: dict[str, Tensor] = {}
            for p in patches:
                out[p.key] = p.apply(out.get(p.key, named[p.key]))
            self._weights_cache = (signature, out)
        return self._weights_cache[1]

    @contextmanager
    def session(self) -> Iterator[PatchedCall]:
        """The shared UNet with this clone's patches for the duration of the ``with`` block."""
        shared = _shared(self.model)
        with shared.lock, ExitStack() as stack:
            call = PatchedCall(self.model, self._weights())
            if any(isinstance(p, _HOOKED) for p in self.patches):
                self._install(call, stack)
            yield call

    def __call__(self, sample: Tensor, timestep, *args, **kwargs):
        """One patched call of the UNet (same arguments as the diffusers UNet)."""
        with self.session() as call:
            return call(sample, timestep, *args, **kwargs)

    def _install(self, call: PatchedCall, stack: ExitStack) -> None:
        layout = self.layout

        def hook(handle) -> None:
            stack.callback(handle.remove)

        mc = layout.model_channels
        for ref, module in layout.input_blocks:
            fns = [p.fn for p in self.patches if isinstance(p, InputBlockPatch)]
            if fns:
                hook(module.register_forward_hook(input_block_hook(fns, ref, mc, call)))
        for ref, resnet, channels in layout.output_blocks:
            fns = [p.fn for p in self.patches if isinstance(p, OutputBlockPatch)]
            if fns:
                hook(
                    resnet.register_forward_pre_hook(
                        output_block_hook(fns, ref, mc, channels, call), with_kwargs=True
                    )
                )
        attention = [p for p in self.patches if isinstance(p, _AttentionPatch)]
        tracked: set[int] = set()
        for site, attn, t2d in layout.attention:
            mine = [p for p in attention if p.applies_to(site)]
            if not mine:
                continue
            if id(t2d) not in tracked:  # the query resolution, from the feature map entering the block
                tracked.add(id(t2d))
                hook(t2d.register_forward_pre_hook(resolution_hook(call), with_kwargs=True))
            inputs = [p.fn for p in mine if isinstance(p, AttentionInputPatch)]
            if inputs:
                hook(
                    attn.register_forward_pre_hook(attention_input_hook(inputs, site, call), with_kwargs=True)
                )
            replace = [p.fn for p in mine if isinstance(p, AttentionReplace)]
            if replace:
                original = attn.processor
                attn.set_processor(ReplacingProcessor(replace[-1], site, call))
                stack.callback(attn.set_processor, original)
            outputs = [p.fn for p in mine if isinstance(p, AttentionOutputPatch)]
            if outputs:
                hook(attn.register_forward_hook(attention_output_hook(outputs, site, call)))
            observers = [p.fn for p in mine if isinstance(p, AttentionObserver)]
            if observers:
                hook(attn.register_forward_hook(observer_hook(observers, site, call), with_kwargs=True))
