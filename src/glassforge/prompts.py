"""A1111's prompt syntax as pure functions with typed results.

Everything here reproduces AUTOMATIC1111 1.10 / Forge 2 behaviour (``modules/prompt_parser.py``,
``modules/extra_networks.py``, the LoRA extension), as described in ``shared/reference/a1111_forge.md`` §3, including
its corner cases; the code is our own. The order in which A1111 applies the pieces to a positive prompt is:

1. :func:`extract_extra_networks` — ``<lora:name:0.8>`` tags are removed from the text and returned as data;
2. :func:`split_and` — composable diffusion, ``a AND b :1.2`` → sub-prompts with weights (positive prompt only);
3. :func:`prompt_schedule` — prompt editing ``[a:b:when]`` and alternation ``[a|b]`` → ``(end_at_step, text)``;
4. :func:`parse_attention` — emphasis ``(word:1.3)`` and ``BREAK`` on each scheduled text, at encoding time.

:func:`parse_prompt` runs 1–3 and returns a :class:`ParsedPrompt`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = [
    "EMPHASIS_MODES",
    "ExtraNetworkTag",
    "LoraSpec",
    "ParsedPrompt",
    "PromptSyntaxError",
    "ScheduledText",
    "SubPrompt",
    "WeightedText",
    "extract_extra_networks",
    "parse_attention",
    "parse_prompt",
    "prompt_schedule",
    "schedule_index_at",
    "split_and",
]

EMPHASIS_MODES = ("None", "Ignore", "Original", "No norm")
"""A1111's ``emphasis`` option: ``None`` reads brackets literally (and ignores BREAK), ``Ignore`` parses them but
multiplies nothing, ``Original`` (default) multiplies and restores the mean, ``No norm`` multiplies only."""

ROUND_MULTIPLIER = 1.1
SQUARE_MULTIPLIER = 1 / 1.1


class PromptSyntaxError(ValueError):
    """A prompt that A1111 itself could not process (it would fail with a traceback)."""


# --------------------------------------------------------------------------------------------- emphasis


@dataclass(frozen=True, slots=True)
class WeightedText:
    """One run of prompt text with its emphasis multiplier, or a BREAK marker (``is_break``, text "BREAK")."""

    text: str
    weight: float = 1.0
    is_break: bool = False


# Token kinds of the emphasis parser, in priority order: an escaped bracket or backslash (literal), a lone
# backslash (dropped), an opener, ':number)' closing a round bracket with an explicit weight, a closer, a run of
# ordinary text, a colon that is not part of a weight.
_ATTENTION_TOKEN = re.compile(r"\\[()\[\]\\]|\\|[(\[]|:\s*([+-]?[.\d]+)\s*\)|[)\]]|[^\\()\[\]:]+|:")
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)


def parse_attention(text: str, emphasis: str = "Original") -> list[WeightedText]:
    """Split ``text`` into runs with A1111's emphasis multipliers.

    ``(x)`` ×1.1, ``[x]`` ÷1.1, ``(x:w)`` ×w, nesting multiplies; ``\\(`` ``\\)`` ``\\[`` ``\\]`` ``\\\\`` are literal
    characters and any other backslash is dropped; an unclosed ``(``/``[`` applies to the rest of the prompt; a closer
    without opener is literal text; ``[x:1.2]`` is not a weight. ``BREAK`` (uppercase whole word) becomes a marker —
    but inside brackets A1111 multiplies the marker's internal weight, after which it is the literal word "BREAK" with
    a negative weight; that quirk is kept. Neighbouring runs with exactly equal weights are merged; an empty prompt
    gives one empty run. ``emphasis="None"`` returns the whole text as one literal run (A1111 1.10 does not look for
    BREAK either then).

    >>> [(r.text, round(r.weight, 4)) for r in parse_attention("an (important) word")]
    [('an ', 1.0), ('important', 1.1), (' word', 1.0)]
    """
    if emphasis not in EMPHASIS_MODES:
        raise ValueError(f"unknown emphasis mode {emphasis!r}; expected one of {', '.join(EMPHASIS_MODES)}")
    if emphasis == "None":
        return [WeightedText(text, 1.0)]

    runs: list[list] = []  # [text, weight]; the BREAK marker is ["BREAK", -1.0] exactly as in A1111
    round_open: list[int] = []
    square_open: list[int] = []

    def scale(start: int, factor: float) -> None:
        for run in runs[start:]:
            run[1] *= factor

    for match in _ATTENTION_TOKEN.finditer(text):
        token, number = match.group(0), match.group(1)
        if token.startswith("\\"):
            runs.append([token[1:], 1.0])
        elif token == "(":
            round_open.append(len(runs))
        elif token == "[":
            square_open.append(len(runs))
        elif number is not None and round_open:
            try:
                factor = float(number)
            except ValueError:
                raise PromptSyntaxError(
                    f"emphasis weight {number!r} in {text!r} is not a number; expected e.g. (word:1.2)"
                ) from None
            scale(round_open.pop(), factor)
        elif token == ")" and round_open:
            scale(round_open.pop(), ROUND_MULTIPLIER)
        elif token == "]" and square_open:
            scale(square_open.pop(), SQUARE_MULTIPLIER)
        else:
            for i, part in enumerate(_BREAK.split(token)):
                if i:
                    runs.append(["BREAK", -1.0])
                runs.append([part, 1.0])

    for start in round_open:
        scale(start, ROUND_MULTIPLIER)
    for start in square_open:
        scale(start, SQUARE_MULTIPLIER)
    if not runs:
        runs = [["", 1.0]]

    merged: list[list] = [runs[0]]
    for run in runs[1:]:
        if run[1] == merged[-1][1]:
            merged[-1][0] += run[0]
        else:
            merged.append(run)
    return [
        WeightedText("BREAK", 1.0, is_break=True) if (t == "BREAK" and w == -1) else WeightedText(t, w)
        for t, w in merged
    ]


# --------------------------------------------------------------------------------------- composable AND


@dataclass(frozen=True, slots=True)
class SubPrompt:
    """One ``AND`` part of a prompt and its weight in the composable-diffusion sum."""

    text: str
    weight: float = 1.0


_AND = re.compile(r"\bAND\b")
_TRAILING_WEIGHT = re.compile(r"^(.*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$", re.S)


def split_and(prompt: str) -> list[SubPrompt]:
    """Split on the whole uppercase word ``AND``; each part may end with ``:number`` (default 1.0).

    Trailing whitespace (and the weight) is cut from each text, leading whitespace is kept, as in A1111:
    ``split_and("cat AND dog :1.2")`` → ``[SubPrompt("cat", 1.0), SubPrompt(" dog", 1.2)]``.
    The negative prompt is never split (A1111).
    """
    parts = []
    for piece in _AND.split(prompt):
        match = _TRAILING_WEIGHT.search(piece)
        if match is None:  # cannot happen with this pattern; kept for A1111's fallback semantics
            parts.append(SubPrompt(piece, 1.0))
        else:
            parts.append(SubPrompt(match.group(1), float(match.group(2)) if match.group(2) else 1.0))
    return parts


# ------------------------------------------------------------------------------------ extra networks

_EXTRA_NETWORK = re.compile(r"<(\w+):([^>]+)>")


@dataclass(frozen=True, slots=True)
class ExtraNetworkTag:
    """An extra-network tag ``<kind:arg1:arg2...>`` found in a prompt; ``items`` are the ``:``-separated args."""

    kind: str
    items: tuple[str, ...]

    @property
    def positional(self) -> tuple[str, ...]:
        """Args that are not ``key=value`` (A1111: an item with exactly one ``=`` is named)."""
        return tuple(item for item in self.items if len(item.split("=", 2)) != 2)

    @property
    def named(self) -> dict[str, str]:
        out = {}
        for item in self.items:
            parts = item.split("=", 2)
            if len(parts) == 2:
                out[parts[0]] = parts[1]
        return out

    @property
    def name(self) -> str:
        """The network's name: the first positional argument (empty if there is none)."""
        positional = self.positional
        return positional[0] if positional else ""

    def __str__(self) -> str:
        return f"<{self.kind}:{':'.join(self.items)}>"


@dataclass(frozen=True, slots=True)
class LoraSpec:
    """A ``<lora:name:te:unet:dyn>`` tag read with the LoRA extension's rules (``te=``/``unet=``/``dyn=`` too)."""

    name: str
    te_multiplier: float = 1.0
    unet_multiplier: float = 1.0
    dyn_dim: int | None = None

    @classmethod
    def from_tag(cls, tag: ExtraNetworkTag) -> LoraSpec:
        if tag.kind not in ("lora", "lyco"):
            raise ValueError(f"{tag} is a <{tag.kind}:...> tag; expected <lora:name:multiplier>")
        pos, named = tag.positional, tag.named
        if not pos:
            raise PromptSyntaxError(f"{tag} has no network name; expected <lora:name:multiplier>")
        try:
            te = float(named.get("te", pos[1] if len(pos) > 1 else 1.0))
            unet = float(named.get("unet", pos[2] if len(pos) > 2 else te))
            dyn_text = named.get("dyn", pos[3] if len(pos) > 3 else None)
            dyn = int(dyn_text) if dyn_text is not None else None
        except ValueError:
            raise PromptSyntaxError(
                f"{tag} has a multiplier that is not a number; expected e.g. <lora:name:0.8> or <lora:name:te=1:unet=0.5>"
            ) from None
        return cls(pos[0], te, unet, dyn)


def extract_extra_networks(prompt: str) -> tuple[str, list[ExtraNetworkTag]]:
    """Remove every ``<kind:args>`` tag from ``prompt``; return the remaining text and the tags in order."""
    tags: list[ExtraNetworkTag] = []

    def take(match: re.Match) -> str:
        tags.append(ExtraNetworkTag(match.group(1), tuple(match.group(2).split(":"))))
        return ""

    return _EXTRA_NETWORK.sub(take, prompt), tags


# --------------------------------------------------------------------------- prompt editing / alternation


@dataclass(frozen=True, slots=True)
class ScheduledText:
    """The prompt text to use up to and including sampling step ``end_at_step`` (A1111 counts from 1)."""

    end_at_step: int
    text: str


class _Fail(Exception):
    """Internal: the bracket being read is not a construct of the scheduling grammar."""


class _Scheduled:
    __slots__ = ("after", "before", "number", "when")

    def __init__(self, before: list | None, after: list, number: str) -> None:
        self.before, self.after, self.number, self.when = before, after, number, 0


class _Alternate:
    __slots__ = ("options",)

    def __init__(self, options: list[list]) -> None:
        self.options = options


_SPECIAL = set("\\[]():|")
_WHEN = re.compile(r"\s*([+-]?(?:\d+[eE][+-]?\d+|(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?|\d+))\s*")


def _read_plain(s: str, i: int) -> tuple[str, int]:
    """A run of ordinary characters, where a backslash escapes any next character except a newline."""
    start = i
    while i < len(s):
        c = s[i]
        if c == "\\":
            if i + 1 >= len(s) or s[i + 1] == "\n":
                raise _Fail
            i += 2
        elif c in _SPECIAL:
            break
        else:
            i += 1
    return s[start:i], i


def _read_bracket(s: str, i: int) -> tuple[list, int]:
    """Read the construct opened at ``s[i]`` (``(`` or ``[``); return its nodes and the index after it."""
    opener = s[i]
    closer = ")" if opener == "(" else "]"
    parts: list[list] = [[]]
    separators: list[str] = []
    i += 1
    while True:
        if i >= len(s):
            raise _Fail
        c = s[i]
        if c == closer:
            i += 1
            break
        if c in ":|":
            separators.append(c)
            parts.append([])
            i += 1
        elif c in ")]":
            raise _Fail
        elif c in "([":
            nodes, i = _read_bracket(s, i)
            parts[-1].extend(nodes)
        else:
            text, i = _read_plain(s, i)
            parts[-1].append(text)

    if opener == "(":  # emphasis (x) or (x:y): kept as text, only its contents may hold constructs
        if len(separators) > 1 or "|" in separators:
            raise _Fail
        return ["(", *parts[0], *([":", *parts[1]] if separators else []), ")"], i
    if not separators:  # [x]
        return ["[", *parts[0], "]"], i
    if all(sep == "|" for sep in separators):
        return [_Alternate(parts)], i
    if all(sep == ":" for sep in separators) and len(separators) <= 2:
        last = parts[-1]
        match = _WHEN.fullmatch("".join(last)) if all(isinstance(n, str) for n in last) else None
        if match is None:
            raise _Fail
        before = parts[0] if len(separators) == 2 else None
        return [_Scheduled(before, parts[-2], match.group(1))], i
    raise _Fail


def _parse_schedule_tree(prompt: str) -> list | None:
    """Top level: constructs where they parse, stray ``[]():`` kept as text; ``None`` if the grammar rejects the
    prompt (a ``|`` outside an alternation, a backslash at the end or before a newline)."""
    nodes: list = []
    i = 0
    try:
        while i < len(prompt):
            c = prompt[i]
            if c in "([":
                try:
                    sub, i = _read_bracket(prompt, i)
                    nodes.extend(sub)
                except _Fail:
                    nodes.append(c)
                    i += 1
            elif c in "]):":
                nodes.append(c)
                i += 1
            elif c == "|":
                return None
            else:
                text, i = _read_plain(prompt, i)
                nodes.append(text)
    except (_Fail, RecursionError):
        return None
    return nodes


def _walk(nodes: list):
    for node in nodes:
        if isinstance(node, _Scheduled):
            yield node
            if node.before is not None:
                yield from _walk(node.before)
            yield from _walk(node.after)
        elif isinstance(node, _Alternate):
            yield node
            for option in node.options:
                yield from _walk(option)


def _render(nodes: list, step: int, out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, _Scheduled):
            if step <= node.when:
                if node.before is not None:
                    _render(node.before, step, out)
            else:
                _render(node.after, step, out)
        else:
            _render(node.options[(step - 1) % len(node.options)], step, out)


def prompt_schedule(
    prompt: str, steps: int, *, hires_steps: int | None = None, use_old_scheduling: bool = False
) -> list[ScheduledText]:
    """A1111's ``get_learned_conditioning_prompt_schedules`` for one prompt.

    ``[from:to:when]`` uses ``from`` while step ≤ when, then ``to``; ``[to:when]`` adds, ``[from::when]`` removes.
    ``when`` with a ``.`` is a fraction of the steps (int(when·steps)), otherwise a step number; clamped to ``steps``,
    and only values ≥ 1 create a switch. ``[a|b|c]`` alternates every step. With ``hires_steps`` the schedule is for
    the hires pass (integer ``when`` shifted by ``steps``, decimal ``when`` read on the 1…2 range); the old rule
    (``use_old_scheduling``) reads ``when`` < 1 as a fraction. Prompts the grammar rejects are used literally.
    One case has no single A1111 answer: a construct directly followed by a stray ``]``, ``)``, ``(`` or ``:``
    (``[a:1])``) is ambiguous in its Earley grammar, and Lark's pick varies with Python's hash seed; we always read
    the construct, as A1111 does everywhere else.

    >>> prompt_schedule("a [b:3]", 10)
    [ScheduledText(end_at_step=3, text='a '), ScheduledText(end_at_step=10, text='a b')]
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if hires_steps is not None and (not isinstance(hires_steps, int) or hires_steps < 1):
        raise ValueError(f"hires_steps must be a positive integer or None, got {hires_steps!r}")
    if hires_steps is None or use_old_scheduling:
        int_offset, frac_offset, total = 0, 0.0, steps
    else:
        int_offset, frac_offset, total = steps, 1.0, hires_steps

    tree = _parse_schedule_tree(prompt)
    if tree is None:
        return [ScheduledText(total, prompt)]

    switch_points = {total}
    for node in _walk(tree):
        if isinstance(node, _Alternate):
            switch_points.update(range(1, total + 1))
            continue
        value = float(node.number)
        if use_old_scheduling:
            value = value * total if value < 1 else value
        elif "." in node.number:
            value = (value - frac_offset) * total
        else:
            value = value - int_offset
        node.when = total if value >= total else (int(value) if math.isfinite(value) else -1)
        if node.when >= 1:
            switch_points.add(node.when)

    schedule = []
    for step in sorted(switch_points):
        out: list[str] = []
        _render(tree, step, out)
        schedule.append(ScheduledText(step, "".join(out)))
    return schedule


def schedule_index_at(schedule: list[ScheduledText], step: int) -> int:
    """Which entry A1111 uses at denoiser call ``step``: the first with ``step ≤ end_at_step``, else the first entry
    (A1111's fallback when the call count runs past the schedule)."""
    for index, entry in enumerate(schedule):
        if step <= entry.end_at_step:
            return index
    return 0


# -------------------------------------------------------------------------------------------- together


@dataclass(frozen=True, slots=True)
class ParsedPrompt:
    """A prompt taken apart as A1111 does before encoding: extra networks out, ``AND`` parts, their schedules."""

    prompt: str
    text: str
    extra_networks: tuple[ExtraNetworkTag, ...]
    subprompts: tuple[SubPrompt, ...]
    schedules: tuple[tuple[ScheduledText, ...], ...]

    @property
    def loras(self) -> list[LoraSpec]:
        return [LoraSpec.from_tag(tag) for tag in self.extra_networks if tag.kind in ("lora", "lyco")]

    def texts(self) -> list[str]:
        """Every distinct text that must be encoded, in first-seen order (A1111 encodes each once)."""
        return list(dict.fromkeys(entry.text for schedule in self.schedules for entry in schedule))


def parse_prompt(
    prompt: str,
    steps: int,
    *,
    negative: bool = False,
    hires_steps: int | None = None,
    use_old_scheduling: bool = False,
) -> ParsedPrompt:
    """Extra networks removed, ``AND`` split (not for a negative prompt), each part scheduled over ``steps``."""
    text, tags = extract_extra_networks(prompt)
    subprompts = [SubPrompt(text, 1.0)] if negative else split_and(text)
    schedules = tuple(
        tuple(prompt_schedule(sp.text, steps, hires_steps=hires_steps, use_old_scheduling=use_old_scheduling))
        for sp in subprompts
    )
    return ParsedPrompt(prompt, text, tuple(tags), tuple(subprompts), schedules)
