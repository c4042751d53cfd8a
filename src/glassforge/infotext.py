"""A1111's generation-parameters text ("infotext"): writing and parsing it.

The format (A1111 1.10 ``create_infotext`` / ``parse_generation_parameters``; Forge keeps it)::

    <prompt, possibly several lines>
    Negative prompt: <negative prompt>          (omitted when empty)
    Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1, Size: 512x512, ...

Writing: parameters in A1111's fixed key order, then the extra keys in insertion order, then
``Version`` and ``User`` (Forge appends ``Diffusion in Low Bits`` and ``Module N`` after those).
``None`` values are skipped, a value equal to its key is written as the bare key, and a value
containing ``,``, ``:`` or a newline is written as a JSON string. Numbers are written as A1111's UI
writes them: ``CFG scale: 7``, ``Denoising strength: 0.7``.

Parsing: the last line is the parameter line only if it holds at least three ``key: value`` pairs;
lines before ``Negative prompt:`` are the prompt, the rest the negative prompt. Quoted values are
JSON-decoded and ``WxH`` values split into ``<key>-1`` / ``<key>-2``.

:func:`parse_generation_parameters` returns A1111's dict (string values, A1111's defaults filled in);
:class:`GenerationParams` is the typed record glassforge writes and reads, with unknown keys kept in
``extra`` in their order so they survive a round trip.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

# ---------------------------------------------------------------- the format

# A1111 1.10 create_infotext's fixed keys, in order (Forge's "Distilled CFG Scale" included).
FIXED_KEYS = (
    "Steps", "Sampler", "Schedule type", "CFG scale", "Distilled CFG Scale", "Image CFG scale", "Seed",
    "Face restoration", "Size", "Model hash", "Model", "FP8 weight", "Cache FP16 weight for LoRA", "VAE hash",
    "VAE", "Variation seed", "Variation seed strength", "Seed resize from", "Denoising strength",
    "Conditional mask weight", "Clip skip", "ENSD", "Token merging ratio", "Token merging ratio hr",
    "Init image hash", "RNG", "Tiling",
)  # fmt: skip
# Written after Version and User by Forge.
_FORGE_TAIL = re.compile(r"^(Diffusion in Low Bits|Module \d+)$")
# A1111's timestep samplers do not resolve "Automatic" to a schedule (sd_samplers_timesteps.py).
_TIMESTEP_SAMPLERS = frozenset({"DDIM", "DDIM CFG++", "PLMS", "UniPC"})

# key: one word character then word characters, spaces, '-' or '/'; value: a JSON-style quoted
# string or everything up to the next comma.
_RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_RE_KEY = re.compile(r"^\w[\w \-/]+$")
_RE_IMAGESIZE = re.compile(r"^(\d+)x(\d+)$")
_NEGATIVE = "Negative prompt:"


def format_value(value: Any) -> str:
    """A value as A1111's UI writes it: integral floats without ``.0``, bools as ``True``/``False``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def quote(value: Any) -> str:
    """A1111's ``quote``: JSON string if the text holds ``,``, ``:`` or a newline, else the raw text.

    Beyond A1111: text that A1111's parser would not read back unchanged (surrounded by double quotes,
    or with leading/trailing whitespace) is quoted too. A1111's parser decodes both forms the same way.
    """
    text = format_value(value)
    needs_quotes = any(c in text for c in ",:\n")
    lossy = text != text.strip() or (len(text) >= 2 and text[0] == '"' and text[-1] == '"')
    return json.dumps(text, ensure_ascii=False) if needs_quotes or lossy else text


def unquote(text: str) -> str:
    """JSON-decode a double-quoted value; anything else (or invalid JSON) is returned as it is."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def join_params(items: list[tuple[str, Any]]) -> str:
    """The parameter line: ``key: value`` pairs joined by ``", "``; None skipped; ``key`` if value == key."""
    return ", ".join(k if k == v else f"{k}: {quote(v)}" for k, v in items if v is not None)


def build_infotext(prompt: str, negative_prompt: str, params: list[tuple[str, Any]]) -> str:
    """The whole infotext, as A1111 assembles it (and ``strip()``s it)."""
    negative = f"\n{_NEGATIVE} {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative}\n{join_params(params)}".strip()


def split_infotext(text: str) -> tuple[str, str, list[tuple[str, str]]]:
    """(prompt, negative prompt, [(key, decoded value), ...]) by A1111's rules.

    Values are JSON-decoded when quoted and otherwise left as written; empty values are dropped (A1111
    fails on them and skips the key). Civitai's FLUX infotexts get Forge's fix-ups.
    """
    *lines, last = text.strip().split("\n")
    if len(_RE_PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt: list[str] = []
    negative: list[str] = []
    for line in lines:
        line = line.strip()
        if line.startswith(_NEGATIVE):
            negative.append(line[len(_NEGATIVE) :].strip())
        elif negative:
            negative.append(line)
        else:
            prompt.append(line)
    if "Civitai" in last and "FLUX" in last:  # Forge's fix-ups for Civitai's Flux infotexts
        last = re.sub(r"Clip skip: [0-8], ", "", last)
        last = last.replace("Sampler: Undefined, ", "Sampler: Euler, Schedule type: Simple, ")
        last = last.replace("CFG scale: ", "CFG scale: 1, Distilled CFG Scale: ")
    pairs = [(k, unquote(v)) for k, v in _RE_PARAM.findall(last) if v]
    return "\n".join(prompt), "\n".join(negative), pairs


# ---------------------------------------------------------------- A1111's parser (dict form)

_A1111_DEFAULTS: dict[str, Any] = {
    "Clip skip": "1",
    "Hires resize-1": 0,
    "Hires resize-2": 0,
    "Hires sampler": "Use same sampler",
    "Hires schedule type": "Use same scheduler",
    "Hires checkpoint": "Use same checkpoint",
    "Hires prompt": "",
    "Hires negative prompt": "",
    "Mask mode": "Inpaint masked",
    "Masked content": "original",
    "Inpaint area": "Whole picture",
    "Masked area padding": 32,
    "RNG": "GPU",
    "Schedule type": "Automatic",
    "Schedule max sigma": 0,
    "Schedule min sigma": 0,
    "Schedule rho": 0,
    "VAE Encoder": "Full",
    "VAE Decoder": "Full",
    "FP8 weight": "Disable",
}


def parse_generation_parameters(text: str) -> dict[str, Any]:
    """A1111's ``parse_generation_parameters``: a dict of strings keyed as in the text, plus
    ``Prompt`` and ``Negative prompt``, ``WxH`` values split into ``-1``/``-2``, defaults filled in.

    As in A1111, sampler names are left as written (the split of legacy names such as
    ``DPM++ 2M Karras`` happens when the values are used; :meth:`GenerationParams.from_infotext`
    does it).
    """
    prompt, negative, pairs = split_infotext(text)
    res: dict[str, Any] = {}
    for key, value in pairs:
        m = _RE_IMAGESIZE.match(value)
        if m:
            res[f"{key}-1"], res[f"{key}-2"] = m.group(1), m.group(2)
        else:
            res[key] = value
    res["Prompt"] = prompt
    res["Negative prompt"] = negative
    if "Hypernet" in res:
        res["Prompt"] += f"<hypernet:{res['Hypernet']}:{res.get('Hypernet strength', '1.0')}>"
    for key, value in _A1111_DEFAULTS.items():
        res.setdefault(key, value)
    if res["FP8 weight"] != "Disable":
        res.setdefault("Cache FP16 weight for LoRA", False)
    if "Emphasis" not in res and (uses_emphasis(prompt) or uses_emphasis(negative)):
        res["Emphasis"] = "Original"
    res.setdefault("Refiner switch by sampling steps", False)
    _backcompat(res)
    return res


def _backcompat(res: dict[str, Any]) -> None:
    """A1111's ``infotext_versions.backcompat``: flags for images made by older A1111 versions."""
    from packaging.version import InvalidVersion, Version

    text = res.get("Version")
    if not text:
        return
    m = re.match(r"([^-]+-[^-]+)-.*", text)
    try:
        version = Version(m.group(1) if m else text)
    except InvalidVersion:  # Forge's "f2.0.1v1.10.1-…", glassforge's own: no back-compat flags
        return
    if version < Version("1.6.0") and "[" in res.get("Prompt", ""):
        res["Old prompt editing timelines"] = True
    if version < Version("1.6.0") and res.get("Sampler", "") in ("DDIM", "PLMS"):
        res["Pad conds v0"] = True
    if version < Version("v1.7.0-225"):
        res["Downcast alphas_cumprod"] = True
    if version < Version("1.8.0") and res.get("Refiner"):
        res["Refiner switch by sampling steps"] = True


# A1111 prompt_parser.re_attention: escapes, brackets, "(text:weight)" closers, plain text.
_RE_ATTENTION = re.compile(r"\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|]|[^\\()\[\]:]+|:")
_RE_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)


def uses_emphasis(prompt: str) -> bool:
    """Whether A1111's ``parse_prompt_attention`` gives any text a weight other than 1.0."""
    weights: list[float | None] = []  # one per text piece; None for BREAK
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply(start: int, factor: float) -> None:
        for i in range(start, len(weights)):
            if weights[i] is not None:
                weights[i] *= factor

    for m in _RE_ATTENTION.finditer(prompt):
        token, weight = m.group(0), m.group(1)
        if token.startswith("\\"):
            weights.append(1.0)
        elif token == "(":
            round_open.append(len(weights))
        elif token == "[":
            square_open.append(len(weights))
        elif weight is not None and round_open:
            try:
                multiply(round_open.pop(), float(weight))
            except ValueError:  # "(x:1.2.3)": A1111 raises; here it is plain text
                weights.append(1.0)
        elif token == ")" and round_open:
            multiply(round_open.pop(), 1.1)
        elif token == "]" and square_open:
            multiply(square_open.pop(), 1 / 1.1)
        else:
            for i, _part in enumerate(_RE_BREAK.split(token)):
                if i:
                    weights.append(None)
                weights.append(1.0)
    for pos in round_open:
        multiply(pos, 1.1)
    for pos in square_open:
        multiply(pos, 1 / 1.1)
    return any(w is not None and w != 1.0 for w in weights)


# ---------------------------------------------------------------- helpers for writers


def a1111_schedule_label(sampler: str, schedule: str | None = "Automatic") -> str:
    """The ``Schedule type`` A1111 writes for a run: an explicit schedule's label, or for
    ``Automatic`` the k-diffusion sampler's default schedule (``DPM++ 2M`` → ``Karras``); samplers
    without a default, and A1111's timestep samplers (DDIM, PLMS, UniPC), keep ``Automatic``."""
    from .sampling.names import resolve_sampler
    from .sampling.schedules import SCHEDULES

    label = SCHEDULES[schedule].name if schedule else "Automatic"
    info, suffix = resolve_sampler(sampler)
    if suffix is not None:
        return suffix if label == "Automatic" else label
    if label != "Automatic" or info.name in _TIMESTEP_SAMPLERS or not info.default_schedule:
        return label
    return SCHEDULES[info.default_schedule].name


def sampler_uses_ensd(sampler: str) -> bool:
    """A1111's ``uses_ensd``: the sampler draws fresh noise from the per-image generators (ancestral
    samplers, DPM fast/adaptive), which ENSD re-seeds. Brownian-tree SDE samplers do not. Unknown
    names count as using it, so an ENSD the caller set is not silently dropped."""
    from .sampling.names import resolve_sampler
    from .sampling.registry import UnknownNameError

    try:
        info, _ = resolve_sampler(sampler)
    except UnknownNameError:
        return True
    return info.stochastic and not info.brownian


def _to_int(key: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if number.is_integer():
            return int(number)
        raise ValueError(f"infotext: {key} must be an integer, got {value!r}") from None


def _to_float(key: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"infotext: {key} must be a number, got {value!r}") from None


def _to_size(key: str, value: str) -> tuple[int, int]:
    m = _RE_IMAGESIZE.match(value.strip())
    if not m:
        raise ValueError(f"infotext: {key} must be WIDTHxHEIGHT (e.g. 512x768), got {value!r}")
    return int(m.group(1)), int(m.group(2))


# ---------------------------------------------------------------- the typed record

_TYPED_NUMBERS = (
    ("Steps", "steps", _to_int),
    ("CFG scale", "cfg_scale", _to_float),
    ("Seed", "seed", _to_int),
    ("Variation seed", "variation_seed", _to_int),
    ("Variation seed strength", "variation_seed_strength", _to_float),
    ("Denoising strength", "denoising_strength", _to_float),
    ("Clip skip", "clip_skip", _to_int),
    ("ENSD", "ensd", _to_int),
)

# Keys that GenerationParams holds in typed fields (everything else goes to ``extra``).
TYPED_KEYS = frozenset(
    {
        "Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Model hash", "Model", "VAE hash",
        "VAE", "Variation seed", "Variation seed strength", "Seed resize from", "Denoising strength",
        "Clip skip", "ENSD", "RNG", "Tiling", "Version", "User",
    }
)  # fmt: skip


@dataclass
class GenerationParams:
    """What one image was made with, as A1111's infotext records it.

    ``schedule`` is the ``Schedule type`` as written (see :func:`a1111_schedule_label`). ``rng`` is
    the noise source: glassforge draws noise on the CPU, so its default is ``"CPU"``; an infotext
    without ``RNG`` means A1111's default, ``"GPU"``. ``ensd`` is written only when non-zero and the
    sampler uses it (:func:`sampler_uses_ensd`). ``extra`` keeps every other key, in order, with its
    value as text (or any value a writer puts there; it is formatted on writing).
    """

    prompt: str = ""
    negative_prompt: str = ""
    steps: int = 20
    sampler: str = "DPM++ 2M"
    schedule: str | None = "Automatic"
    cfg_scale: float = 7.0
    seed: int = -1
    width: int = 512
    height: int = 512
    model_hash: str | None = None
    model: str | None = None
    vae_hash: str | None = None
    vae: str | None = None
    variation_seed: int | None = None  # A1111's subseed; written only with a non-zero strength
    variation_seed_strength: float = 0.0
    seed_resize_from_w: int = 0  # 0 = off
    seed_resize_from_h: int = 0
    denoising_strength: float | None = None
    clip_skip: int = 1
    ensd: int = 0  # eta noise seed delta
    rng: str = "CPU"
    tiling: bool = False
    version: str | None = None
    user: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------ writing

    def params(self) -> list[tuple[str, Any]]:
        """The ``(key, value)`` pairs of the parameter line, in A1111's order (None = not written)."""
        for key in self.extra:
            if key in TYPED_KEYS:
                attr = {"Size": "width/height", "Seed resize from": "seed_resize_from_w/h"}.get(key, "")
                raise ValueError(f"extra key {key!r} is a GenerationParams field; set {attr or 'the field'}")
            if not _RE_KEY.match(key):
                raise ValueError(
                    f"extra key {key!r} cannot be read back; expected a word character followed by word "
                    "characters, spaces, '-' or '/'"
                )
        strength = self.variation_seed_strength
        resize = self.seed_resize_from_w > 0 and self.seed_resize_from_h > 0
        typed: dict[str, Any] = {
            "Steps": self.steps,
            "Sampler": self.sampler,
            "Schedule type": self.schedule,
            "CFG scale": self.cfg_scale,
            "Seed": self.seed,
            "Size": f"{self.width}x{self.height}",
            "Model hash": self.model_hash,
            "Model": self.model,
            "VAE hash": self.vae_hash,
            "VAE": self.vae,
            "Variation seed": self.variation_seed if strength else None,
            "Variation seed strength": strength if strength else None,
            "Seed resize from": f"{self.seed_resize_from_w}x{self.seed_resize_from_h}" if resize else None,
            "Denoising strength": self.denoising_strength,
            "Clip skip": self.clip_skip if self.clip_skip > 1 else None,
            "ENSD": self.ensd if self._writes_ensd() else None,
            "RNG": self.rng if self.rng != "GPU" else None,
            "Tiling": "True" if self.tiling else None,
        }
        extra = dict(self.extra)
        items = [(key, typed[key] if key in typed else extra.pop(key, None)) for key in FIXED_KEYS]
        tail = [(key, extra.pop(key)) for key in list(extra) if _FORGE_TAIL.match(key)]
        items += extra.items()
        items += [("Version", self.version), ("User", self.user), *tail]
        return items

    def _writes_ensd(self) -> bool:
        if not self.ensd:
            return False
        eta = self.extra.get("Eta")
        if eta is not None and str(eta).strip() in ("0", "0.0"):
            return False
        return sampler_uses_ensd(self.sampler)

    def to_infotext(self) -> str:
        """The infotext A1111 would write for these parameters."""
        return build_infotext(self.prompt, self.negative_prompt, self.params())

    # ------------------------------------------------------------ reading

    @classmethod
    def from_infotext(cls, text: str) -> GenerationParams:
        """Parse an infotext by A1111's rules. Absent keys take A1111's defaults (``Clip skip`` 1,
        ``Schedule type`` Automatic, ``RNG`` GPU); legacy combined sampler names (``DPM++ 2M Karras``,
        ``k_dpmpp_2m_ka``, Forge 1's ``Euler A Turbo``) are split into sampler and schedule.
        Raises ValueError naming the key when a typed value cannot be read."""
        prompt, negative, pairs = split_infotext(text)
        values = dict(pairs)
        p = cls(prompt=prompt, negative_prompt=negative, rng="GPU")
        p.extra = {k: v for k, v in values.items() if k not in TYPED_KEYS}
        get = values.get
        for key, attr, convert in _TYPED_NUMBERS:
            if get(key) is not None:
                setattr(p, attr, convert(key, values[key]))
        if get("Size") is not None:
            p.width, p.height = _to_size("Size", values["Size"])
        if get("Seed resize from") is not None:
            resize = _to_size("Seed resize from", values["Seed resize from"])
            p.seed_resize_from_w, p.seed_resize_from_h = resize
        p.tiling = get("Tiling", "False").strip().lower() == "true"
        p.schedule = get("Schedule type", "Automatic")
        p.rng = get("RNG", "GPU")
        for key, attr in (("Model hash", "model_hash"), ("Model", "model"), ("VAE hash", "vae_hash"),
                          ("VAE", "vae"), ("Version", "version"), ("User", "user")):  # fmt: skip
            setattr(p, attr, get(key))
        if get("Sampler") is not None:
            p.sampler, schedule = _split_sampler(values["Sampler"])
            if schedule is not None:
                p.schedule = schedule
        return p

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of the fields."""
        return asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def _split_sampler(name: str) -> tuple[str, str | None]:
    """(sampler, schedule or None): A1111 1.9+'s split of legacy combined names; unknown names kept."""
    from .sampling.names import resolve_sampler
    from .sampling.registry import UnknownNameError

    try:
        info, schedule = resolve_sampler(name)
    except UnknownNameError:
        return name, None
    return (info.name, schedule) if schedule is not None else (name, None)
