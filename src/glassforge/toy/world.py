"""The toy world: a 2-D "pseudo-space" where every word of a prompt is a cluster of points.

A real model maps a prompt to a distribution over 4×64×64 latents. Here the latent is a point in the
plane and the "model" is exact: each word (dog, cat, …) owns one or two Gaussian clusters placed
around a circle, and a prompt reweights the clusters. The denoiser D(x, σ) = E[x0 | x] of the
prompt's mixture is known in closed form (:class:`~glassforge.toy.mixture.GaussianMixture`), so the
path a sampler takes from noise to a cluster can be drawn and checked.

Conditioning. A prompt is parsed with A1111's emphasis syntax (``(dog)`` ×1.1, ``[dog]`` ÷1.1,
``(dog:1.5)`` ×1.5, nesting multiplies; a word mentioned twice adds its weights). The prompt's
distribution is

    p(x0 | prompt) = (1 − leak)·Σ_k π_k·w(word_k)/Z · N(μ_k, s_k²I) + leak·p(x0),

i.e. the listed words' clusters with their prior mass π_k times the word's weight, plus a small part
``leak`` of the unconditional prior p(x0): a real text-conditional model is never perfectly sharp,
and this is what classifier-free guidance (CFG > 1) sharpens away. The empty prompt is p(x0) itself.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..sampling.events import EventHandler, Guidance
from .mixture import GaussianMixture

Denoiser = Callable[[Tensor, Tensor], Tensor]

FILLER_WORDS = frozenset(
    {"a", "an", "the", "of", "and", "with", "in", "on", "at", "by", "to", "for", "break"}
)

_TOKEN = re.compile(r"\\[()\[\]\\]|\\|\(|\[|:\s*([+-]?[\d.]+)\s*\)|\)|\]|[^\\()\[\]:]+|:")
_WORD = re.compile(r"[a-z]+")


class UnknownWordError(ValueError):
    """A prompt word that names no cluster of the toy world."""

    def __init__(self, unknown: tuple[str, ...], known: tuple[str, ...]):
        self.unknown, self.known = unknown, known
        words = ", ".join(repr(w) for w in unknown)
        plural = "s" if len(unknown) > 1 else ""
        super().__init__(f"unknown word{plural} {words}; known: {', '.join(known)}")


def parse_emphasis(prompt: str) -> list[tuple[str, float]]:
    """A1111-style emphasis: ``(x)`` ×1.1, ``[x]`` ÷1.1, ``(x:w)`` ×w, nested; → [(text, weight)]."""
    chunks: list[list] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def scale(start: int, factor: float) -> None:
        for chunk in chunks[start:]:
            chunk[1] *= factor

    for m in _TOKEN.finditer(prompt):
        tok, number = m.group(0), m.group(1)
        if tok.startswith("\\") and len(tok) == 2:
            chunks.append([tok[1], 1.0])
        elif tok == "\\":
            continue
        elif tok == "(":
            round_open.append(len(chunks))
        elif tok == "[":
            square_open.append(len(chunks))
        elif number is not None and round_open:
            try:
                factor = float(number)
            except ValueError:  # e.g. ":1.2.3)": not a number, keep the text
                chunks.append([tok, 1.0])
            else:
                scale(round_open.pop(), factor)
        elif tok == ")" and round_open:
            scale(round_open.pop(), 1.1)
        elif tok == "]" and square_open:
            scale(square_open.pop(), 1 / 1.1)
        else:
            chunks.append([tok, 1.0])
    for start in round_open:
        scale(start, 1.1)
    for start in square_open:
        scale(start, 1 / 1.1)
    return [(text, weight) for text, weight in chunks]


@dataclass(frozen=True)
class PromptWords:
    """A parsed prompt: known words with their summed weights, and what was not understood."""

    prompt: str
    weights: dict[str, float]  # known word → weight, in order of first mention
    unknown: tuple[str, ...] = ()  # words naming no cluster
    ignored: tuple[str, ...] = ()  # filler words ("a", "the", "of", ...), left out on purpose

    @property
    def empty(self) -> bool:
        return not self.weights and not self.unknown


@dataclass(frozen=True)
class Cluster:
    """One Gaussian component N(mean, std²·I) of a word; ``share`` splits the word's prior mass."""

    word: str
    mean: tuple[float, float]
    std: float
    share: float = 1.0
    label: str = ""  # e.g. "dog (sitting)" for one of two sub-clusters


@dataclass(frozen=True)
class ToyConditioning:
    """A prompt turned into weights over the world's components."""

    words: PromptWords
    weights: Tensor  # [K] mixture weights over all clusters (sum to 1)

    @property
    def prompt(self) -> str:
        return self.words.prompt


def _ring(radius: float = 2.5) -> tuple[Cluster, ...]:
    """Eight words around a circle; animals on one side, plants and things on the other."""
    layout = [  # word, angle (degrees), sub-clusters as (tangential offset, std, share, label)
        ("dog", 90, [(-0.38, 0.25, 0.5, "dog (sitting)"), (0.38, 0.25, 0.5, "dog (running)")]),
        ("cat", 135, [(0.0, 0.32, 1.0, "")]),
        ("bird", 180, [(0.0, 0.30, 1.0, "")]),
        ("fish", 225, [(0.0, 0.32, 1.0, "")]),
        ("flower", 270, [(-0.36, 0.25, 0.6, "flower (red)"), (0.36, 0.25, 0.4, "flower (yellow)")]),
        ("tree", 315, [(0.0, 0.36, 1.0, "")]),
        ("house", 0, [(0.0, 0.34, 1.0, "")]),
        ("car", 45, [(0.0, 0.30, 1.0, "")]),
    ]
    clusters = []
    for word, degrees, subs in layout:
        a = math.radians(degrees)
        radial, tangent = (math.cos(a), math.sin(a)), (-math.sin(a), math.cos(a))
        for offset, std, share, label in subs:
            mean = (radius * radial[0] + offset * tangent[0], radius * radial[1] + offset * tangent[1])
            clusters.append(Cluster(word, (round(mean[0], 6), round(mean[1], 6)), std, share, label or word))
    return tuple(clusters)


@dataclass(frozen=True)
class ToyWorld:
    """Words as Gaussian clusters in the plane, with the exact denoiser of any prompt's mixture."""

    clusters: tuple[Cluster, ...] = field(default_factory=_ring)
    leak: float = 0.02  # part of the unconditional prior kept in every prompt's distribution

    def __post_init__(self):
        if not self.clusters:
            raise ValueError("a toy world needs at least one cluster")
        if not 0.0 <= self.leak < 1.0:
            raise ValueError(f"leak must be in [0, 1), got {self.leak}")

    @classmethod
    def default(cls, leak: float = 0.02, radius: float = 2.5) -> ToyWorld:
        return cls(_ring(radius), leak)

    # ------------------------------------------------------------------ the world

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.word for c in self.clusters))

    @property
    def means(self) -> Tensor:
        return torch.tensor([c.mean for c in self.clusters], dtype=torch.float64)

    @property
    def stds(self) -> Tensor:
        return torch.tensor([c.std for c in self.clusters], dtype=torch.float64)

    @property
    def word_index(self) -> Tensor:
        """[K] index into :attr:`words` of each cluster's word."""
        words = self.words
        return torch.tensor([words.index(c.word) for c in self.clusters])

    def prior_weights(self) -> Tensor:
        """π_k: every word has the same mass, split between its clusters by ``share``."""
        totals: dict[str, float] = {}
        for c in self.clusters:
            totals[c.word] = totals.get(c.word, 0.0) + c.share
        n = len(totals)
        return torch.tensor([c.share / totals[c.word] / n for c in self.clusters], dtype=torch.float64)

    # ------------------------------------------------------------------ prompts

    def parse(self, prompt: str) -> PromptWords:
        known = set(self.words)
        weights: dict[str, float] = {}
        unknown: list[str] = []
        ignored: list[str] = []
        for text, weight in parse_emphasis(prompt):
            for word in _WORD.findall(text.lower()):
                if word not in known and word.endswith("s") and word[:-1] in known:
                    word = word[:-1]  # "dogs" → "dog"
                if word in known:
                    weights[word] = weights.get(word, 0.0) + weight
                elif word in FILLER_WORDS:
                    ignored.append(word)
                elif word not in unknown:
                    unknown.append(word)
        return PromptWords(prompt, weights, tuple(unknown), tuple(ignored))

    def condition(self, prompt: str | PromptWords, strict: bool = True) -> ToyConditioning:
        """Weights over the clusters for ``prompt`` (see the module doc); unknown words raise if strict."""
        words = prompt if isinstance(prompt, PromptWords) else self.parse(prompt)
        if strict and words.unknown:
            raise UnknownWordError(words.unknown, self.words)
        prior = self.prior_weights()
        if not words.weights:
            return ToyConditioning(words, prior)
        negative = {w: v for w, v in words.weights.items() if v < 0}
        if negative:
            raise ValueError(f"word weights must not be negative: {negative}")
        per_cluster = torch.tensor(
            [words.weights.get(c.word, 0.0) for c in self.clusters], dtype=torch.float64
        )
        listed = prior * per_cluster
        if float(listed.sum()) <= 0:
            raise ValueError(f"every word of the prompt {words.prompt!r} has weight 0")
        weights = (1 - self.leak) * listed / listed.sum() + self.leak * prior
        return ToyConditioning(words, weights / weights.sum())

    def mixture(self, prompt: str | PromptWords | ToyConditioning = "") -> GaussianMixture:
        """The prompt's data distribution p(x0 | prompt), keeping only clusters with weight > 0."""
        cond = prompt if isinstance(prompt, ToyConditioning) else self.condition(prompt)
        keep = cond.weights > 0
        return GaussianMixture(
            self.means[keep], self.stds[keep], cond.weights[keep] / cond.weights[keep].sum()
        )

    def denoiser(self, prompt: str | PromptWords | ToyConditioning = "") -> GaussianMixture:
        """The exact denoiser D(x, σ) = E[x0 | x] of the prompt's mixture (a callable mixture)."""
        return self.mixture(prompt)

    def guided(
        self,
        prompt: str | PromptWords | ToyConditioning,
        negative: str | PromptWords | ToyConditioning = "",
        cfg: float = 7.0,
        on_event: EventHandler | None = None,
    ) -> ToyGuider:
        """Classifier-free guidance: D_neg + cfg·(D_prompt − D_neg); empty negative = unconditional."""
        return ToyGuider(self.denoiser(prompt), self.denoiser(negative), cfg, on_event)

    # ------------------------------------------------------------------ reading points

    def nearest_cluster(self, x: Tensor) -> Tensor:
        """[N] index of the cluster whose mean is nearest each point of x [N, 2]."""
        return torch.cdist(x.to(torch.float64), self.means).argmin(-1)

    def nearest_word(self, x: Tensor) -> Tensor:
        """[N] index into :attr:`words` of the word whose cluster mean is nearest each point."""
        return self.word_index[self.nearest_cluster(x)]

    def word_fractions(self, x: Tensor) -> dict[str, float]:
        """Fraction of the points of x [N, 2] nearest each word's clusters."""
        counts = torch.bincount(self.nearest_word(x), minlength=len(self.words)).double()
        return {w: float(c) / max(x.shape[0], 1) for w, c in zip(self.words, counts, strict=True)}


class ToyGuider:
    """Classifier-free guidance over two toy denoisers: uncond + w·(cond − uncond).

    With w = 1 the result is cond alone and the unconditional denoiser is not called (as A1111 and
    ComfyUI skip the uncond batch at CFG 1). Emits one :class:`Guidance` event per call when
    ``on_event`` is set. ``guided_and_uncond`` serves the CFG++ samplers.
    """

    def __init__(
        self, cond: Denoiser, uncond: Denoiser, scale: float = 7.0, on_event: EventHandler | None = None
    ):
        self.cond, self.uncond, self.scale, self.on_event = cond, uncond, float(scale), on_event

    def _emit(self, sigma: Tensor, cond: Tensor, uncond: Tensor | None, guided: Tensor, scale: float) -> None:
        if self.on_event is not None:
            self.on_event(Guidance(sigma=sigma, cond=cond, uncond=uncond, guided=guided, scale=scale))

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        cond = self.cond(x, sigma)
        if self.scale == 1.0:
            self._emit(sigma, cond, None, cond, 1.0)
            return cond
        uncond = self.uncond(x, sigma)
        guided = uncond + self.scale * (cond - uncond)
        self._emit(sigma, cond, uncond, guided, self.scale)
        return guided

    def guided_and_uncond(self, x: Tensor, sigma: Tensor, scale_factor: float = 1.0) -> tuple[Tensor, Tensor]:
        scale = self.scale * scale_factor
        cond, uncond = self.cond(x, sigma), self.uncond(x, sigma)
        guided = uncond + scale * (cond - uncond)
        self._emit(sigma, cond, uncond, guided, scale)
        return guided, uncond
