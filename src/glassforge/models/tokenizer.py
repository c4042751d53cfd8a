"""The CLIP BPE tokenizer, offline, and A1111's prompt → 77-token chunks.

**Vocabulary.** Stable Diffusion's text encoders (SD1's CLIP ViT-L/14, SD2's OpenCLIP ViT-H, SDXL's CLIP-L and
OpenCLIP bigG) share OpenAI's byte-level BPE: 49,408 ids, ``BOS`` 49406, ``EOS`` 49407. The encoder is
``instant-clip-tokenizer``, which bundles that vocabulary (no hub, no files); ids are checked against Hugging Face's
``CLIPTokenizer`` in the tests.

**Text clean-up, as A1111 does before BPE.** ``ftfy.fix_text`` when ftfy is installed (A1111 and Forge always have
it: open-clip-torch depends on it; it straightens curly quotes, folds full-width ASCII ``（Ａ）`` → ``(A)``, repairs
mojibake), otherwise Unicode NFC only (what transformers' fast ``CLIPTokenizer`` does); the OpenCLIP tokenizer then
HTML-unescapes twice; whitespace runs → one space, strip, lowercase. :attr:`ClipTokenizer.text_fixer` says which fixer
is in use.

**Two kinds** (:data:`TOKENIZER_KINDS`), differing only in special-token names, HTML unescaping and padding:

- ``"clip-l"`` — SD1.x and SDXL's first encoder (A1111 ``FrozenCLIPEmbedderWithCustomWords``): pad id = EOS 49407.
- ``"openclip"`` — SD2.x (ViT-H) and SDXL's second encoder (bigG) (A1111 ``FrozenOpenCLIPEmbedder*WithCustomWords``,
  Forge's SD2/SDXL ``tokenizer*/special_tokens_map.json`` pad ``"!"``): pad id = 0. As in A1111, every position after
  the first EOS of a chunk is replaced by the pad id.

**Chunks** (A1111 ``sd_hijack_clip.tokenize_line``, Forge ``classic_engine``): each emphasis fragment is tokenized on
its own, tokens carry their fragment's weight, a chunk holds 75 of them (with the comma backtrack and BREAK), and is
sent as ``[BOS] + 75 + [EOS]`` = 77 ids; an empty prompt is one chunk ``BOS, EOS, pad…`` (the empty string is
encoded, never zeros).

**Contract for the text encoder** (implemented elsewhere): encode each chunk index separately (for a batch, all texts'
chunk *i* together, shorter prompts padded with :meth:`ClipTokenizer.empty_chunk`), take the hidden state
``hidden_states[-max(clip_skip, minimal)]`` (SD1 CLIP-L: minimal 1, then the final layer norm; SDXL CLIP-L and bigG:
minimal 2, no final norm, pooled from bigG's last layer through ``text_projection`` of chunk 0; SD2 ViT-H: penultimate
layer then final norm — A1111 1.10 ignores clip skip there), apply :func:`apply_emphasis` to that call's output
``[texts, 77, D]`` with the chunk weights, and concatenate the chunks along the token axis (77·k tokens).
"""

from __future__ import annotations

import functools
import html
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from glassforge.prompts import EMPHASIS_MODES, WeightedText, parse_attention, parse_prompt

if TYPE_CHECKING:
    import torch

__all__ = [
    "BOS_ID",
    "CHUNK_LENGTH",
    "COMMA_ID",
    "EOS_ID",
    "TOKENIZER_KINDS",
    "VOCAB_SIZE",
    "ClipTokenizer",
    "PromptChunk",
    "TokenizedPrompt",
    "apply_emphasis",
    "bundled_bpe_merges",
    "tokenizers_for_family",
]

VOCAB_SIZE = 49408
BOS_ID = 49406
EOS_ID = 49407
COMMA_ID = 267  # ",</w>"
CHUNK_LENGTH = 75  # prompt tokens per chunk; + BOS + EOS = 77
TOKENIZER_KINDS = ("clip-l", "openclip")
_N_MERGES = VOCAB_SIZE - 256 - 256 - 2  # 48,894 merges after the 256 byte tokens and their "</w>" forms
_SPECIAL_NAMES = {
    "clip-l": ("<|startoftext|>", "<|endoftext|>"),
    "openclip": ("<start_of_text>", "<end_of_text>"),
}
_WHITESPACE = re.compile(r"\s+")


# ------------------------------------------------------------------------------------------ vocabulary


@functools.cache
def _byte_alphabet() -> tuple[tuple[int, ...], tuple[str, ...]]:
    """CLIP's (and GPT-2's) byte-level alphabet: the byte values in vocabulary order (printable ones first, so id
    0 is ``!``), and the printable stand-in character of each byte value 0…255."""
    order = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table: dict[int, str] = {b: chr(b) for b in order}
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + len(table) - len(order))  # 256, 257, ... for the non-printable bytes
    order += [b for b in range(256) if b not in order]
    return tuple(order), tuple(table[b] for b in range(256))


@functools.cache
def _instant_tokenizer():
    from instant_clip_tokenizer import Tokenizer

    return Tokenizer()


@functools.cache
def bundled_bpe_merges() -> tuple[tuple[str, str], ...] | None:
    """The 48,894 BPE merges of OpenAI's ``bpe_simple_vocab_16e6.txt`` as bundled inside instant-clip-tokenizer's
    extension module (it embeds the file verbatim), or ``None`` if they cannot be found there.

    Only needed to *name* tokens exactly (the encoder itself is the extension); the tests also build Hugging Face's
    ``CLIPTokenizer`` from them as an independent oracle.
    """
    import instant_clip_tokenizer

    package = Path(instant_clip_tokenizer.__file__).parent
    for binary in sorted(package.glob("instant_clip_tokenizer*")):
        if binary.suffix not in (".so", ".pyd", ".dylib"):
            continue
        data = binary.read_bytes()
        start = data.find(b"#version: 0.2\n")
        if start < 0:
            continue
        lines = data[start:].split(b"\n", _N_MERGES + 1)[1 : _N_MERGES + 1]
        try:
            merges = tuple(tuple(line.decode("utf-8").split(" ")) for line in lines)
        except UnicodeDecodeError:
            continue
        if len(merges) == _N_MERGES and all(len(m) == 2 and m[0] and m[1] for m in merges):
            return merges  # type: ignore[return-value]
    return None


@functools.cache
def _token_bytes() -> tuple[tuple[bytes, bool], ...]:
    """For every non-special id: (the token's bytes, whether it ends a word, i.e. carries ``</w>``)."""
    order, alphabet = _byte_alphabet()
    byte_of = {ch: b for b, ch in enumerate(alphabet)}
    merges = bundled_bpe_merges()
    out: list[tuple[bytes, bool]] = [(bytes([b]), False) for b in order]
    out += [(bytes([b]), True) for b in order]
    if merges is not None:
        for left, right in merges:
            word = left + right
            end = word.endswith("</w>")
            core = word[:-4] if end else word
            out.append((bytes(byte_of[ch] for ch in core), end))
        _check_against_decoder(out)
        return tuple(out)
    # Fallback without the bundled merge list: the extension's decoder is exact except for the few hundred tokens
    # holding a partial UTF-8 sequence, which then show U+FFFD.
    decode = _instant_tokenizer().decode
    for token_id in range(512, VOCAB_SIZE - 2):
        text = decode([token_id])
        end = text.endswith(" ")
        out.append(((text[:-1] if end else text).encode("utf-8"), end))
    return tuple(out)


def _check_against_decoder(table: list[tuple[bytes, bool]]) -> None:
    decode = _instant_tokenizer().decode
    for token_id in range(0, VOCAB_SIZE - 2, 7):
        raw, end = table[token_id]
        try:
            expected = raw.decode("utf-8") + (" " if end else "")
        except UnicodeDecodeError:
            continue
        if decode([token_id]) != expected:
            raise RuntimeError(
                f"instant-clip-tokenizer's bundled vocabulary disagrees with its decoder at id {token_id}; "
                "expected the bundled bpe_simple_vocab_16e6.txt (reinstall instant-clip-tokenizer)"
            )


def _load_text_fixer(name: str):
    if name == "nfc":
        return functools.partial(unicodedata.normalize, "NFC")
    try:
        import ftfy
    except ImportError:
        if name == "ftfy":
            raise ImportError(
                "text_fixer='ftfy' needs the ftfy package (pip install ftfy); or use 'auto' or 'nfc'"
            ) from None
        return None
    return ftfy.fix_text


# -------------------------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class PromptChunk:
    """One 77-token chunk as the text encoder receives it.

    ``texts`` are the token pieces for display: the token's text with ``</w>`` marking a word end (``"photo</w>"``),
    bytes of an incomplete UTF-8 character as ``\\xNN``, and the special tokens by name.
    """

    ids: tuple[int, ...]
    weights: tuple[float, ...]
    texts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TokenizedPrompt:
    """A prompt split into chunks of 77 ids with per-token emphasis weights (1.0 on BOS, EOS and padding)."""

    text: str
    chunks: tuple[PromptChunk, ...]
    token_count: int  # A1111's counter: 75 per finished chunk (BREAK or full) + the tokens of the last one
    fragments: tuple[WeightedText, ...]
    emphasis: str = "Original"

    @property
    def max_length(self) -> int:
        """The counter's denominator: the capacity of the chunks used, ``ceil(max(n, 1) / 75) · 75``."""
        return math.ceil(max(self.token_count, 1) / CHUNK_LENGTH) * CHUNK_LENGTH

    @property
    def counter(self) -> str:
        """A1111's token counter text, e.g. ``"7/75"``."""
        return f"{self.token_count}/{self.max_length}"

    @property
    def ids(self) -> list[int]:
        return [i for chunk in self.chunks for i in chunk.ids]

    @property
    def weights(self) -> list[float]:
        return [w for chunk in self.chunks for w in chunk.weights]

    def ids_tensor(self) -> torch.Tensor:
        """``[chunks, 77]`` int64."""
        import torch

        return torch.tensor([chunk.ids for chunk in self.chunks], dtype=torch.long)

    def weights_tensor(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``[chunks, 77]`` float32 (or ``dtype``)."""
        import torch

        return torch.tensor([chunk.weights for chunk in self.chunks], dtype=dtype or torch.float32)


# -------------------------------------------------------------------------------------------- tokenizer


class ClipTokenizer:
    """CLIP's BPE with A1111's text clean-up, padding and chunking.

    ``kind`` is ``"clip-l"`` (SD1, SDXL's first encoder; pad = EOS) or ``"openclip"`` (SD2, SDXL's second encoder;
    pad = 0); ``text_fixer`` is ``"auto"`` (ftfy if installed, else NFC), ``"ftfy"`` or ``"nfc"``.
    """

    def __init__(self, kind: str = "clip-l", *, text_fixer: str = "auto") -> None:
        if kind not in TOKENIZER_KINDS:
            raise ValueError(f"unknown tokenizer kind {kind!r}; expected one of {', '.join(TOKENIZER_KINDS)}")
        if text_fixer not in ("auto", "ftfy", "nfc"):
            raise ValueError(f"unknown text_fixer {text_fixer!r}; expected 'auto', 'ftfy' or 'nfc'")
        fixer = _load_text_fixer(text_fixer)
        if fixer is None:
            fixer, text_fixer = _load_text_fixer("nfc"), "nfc"
        self.kind = kind
        self.text_fixer = "nfc" if text_fixer == "nfc" else "ftfy"
        self._fix = fixer
        self._bpe = _instant_tokenizer()
        self.bos_id, self.eos_id, self.comma_id = BOS_ID, EOS_ID, COMMA_ID
        self.pad_id = EOS_ID if kind == "clip-l" else 0
        self.special_tokens = _SPECIAL_NAMES[kind]
        self._special_split = re.compile("(" + "|".join(re.escape(s) for s in self.special_tokens) + ")")

    def __repr__(self) -> str:
        return f"ClipTokenizer(kind={self.kind!r}, pad_id={self.pad_id}, text_fixer={self.text_fixer!r})"

    # ----------------------------------------------------------------------------- text → ids

    def normalize(self, text: str) -> str:
        """The text the BPE sees: fixed (ftfy or NFC), HTML-unescaped (openclip), whitespace collapsed, lowercased."""
        text = self._fix(text)
        if self.kind == "openclip":
            text = html.unescape(html.unescape(text)).strip()
        return _WHITESPACE.sub(" ", text).strip().lower()

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without BOS/EOS. The special-token names (``<|endoftext|>`` for clip-l) map to
        their ids, as in the reference tokenizers."""
        ids: list[int] = []
        for piece in self._special_split.split(self.normalize(text)):
            if piece == self.special_tokens[0]:
                ids.append(BOS_ID)
            elif piece == self.special_tokens[1]:
                ids.append(EOS_ID)
            elif piece:
                ids.extend(self._bpe.encode(piece))
        return ids

    # ----------------------------------------------------------------------------- ids → text

    def _check_id(self, token_id: int) -> None:
        if not 0 <= token_id < VOCAB_SIZE:
            raise ValueError(
                f"token id {token_id} is outside the CLIP vocabulary; expected 0…{VOCAB_SIZE - 1}"
            )

    def token_text(self, token_id: int) -> str:
        """Display text of one token: ``"photo</w>"``, ``"café</w>"``, ``"\\xe3\\x81"`` for a partial character,
        the special names for BOS/EOS (the pad id 0 of openclip is the token ``"!"``)."""
        self._check_id(token_id)
        if token_id >= VOCAB_SIZE - 2:
            return self.special_tokens[token_id - BOS_ID]
        raw, end = _token_bytes()[token_id]
        return raw.decode("utf-8", errors="backslashreplace") + ("</w>" if end else "")

    def vocab_token(self, token_id: int) -> str:
        """The token as spelled in Hugging Face's ``vocab.json`` (byte-level alphabet), e.g. ``"cafÃ©</w>"``."""
        self._check_id(token_id)
        if token_id >= VOCAB_SIZE - 2:
            return _SPECIAL_NAMES["clip-l"][token_id - BOS_ID]
        raw, end = _token_bytes()[token_id]
        alphabet = _byte_alphabet()[1]
        return "".join(alphabet[b] for b in raw) + ("</w>" if end else "")

    def decode(self, ids: Sequence[int], *, skip_special: bool = True) -> str:
        """Text of a token sequence; word ends become spaces (CLIP cannot restore the original spacing)."""
        parts: list[bytes] = []
        for token_id in ids:
            self._check_id(token_id)
            if token_id >= VOCAB_SIZE - 2:
                if not skip_special:
                    parts.append(self.special_tokens[token_id - BOS_ID].encode() + b" ")
                continue
            raw, end = _token_bytes()[token_id]
            parts.append(raw + (b" " if end else b""))
        return b"".join(parts).decode("utf-8", errors="replace").strip()

    # ----------------------------------------------------------------------------- prompt → chunks

    def _finish(self, body_ids: list[int], body_weights: list[float]) -> PromptChunk:
        pad = CHUNK_LENGTH - len(body_ids)
        ids = [BOS_ID, *body_ids, *([EOS_ID] * pad), EOS_ID]
        weights = [1.0, *body_weights, *([1.0] * pad), 1.0]
        if self.pad_id != EOS_ID:
            first_eos = ids.index(EOS_ID)
            ids[first_eos + 1 :] = [self.pad_id] * (len(ids) - first_eos - 1)
        return PromptChunk(tuple(ids), tuple(weights), tuple(self.token_text(i) for i in ids))

    def empty_chunk(self) -> PromptChunk:
        """The chunk A1111 adds to prompts with fewer chunks than others in a batch: BOS, EOS, padding."""
        return self._finish([], [])

    def tokenize_prompt(
        self, text: str, *, emphasis: str = "Original", comma_padding_backtrack: int = 20
    ) -> TokenizedPrompt:
        """Split a (scheduled) prompt text into 77-token chunks with weights, as A1111 does.

        When a chunk is full and the last comma in it is at most ``comma_padding_backtrack`` tokens back, the tokens
        after that comma move to the next chunk (0 disables this). ``BREAK`` closes the current chunk (even an empty
        one). ``emphasis="None"`` reads brackets literally; the other modes parse them (weights are applied, or not,
        by :func:`apply_emphasis`).
        """
        if comma_padding_backtrack < 0:
            raise ValueError(f"comma_padding_backtrack must be ≥ 0, got {comma_padding_backtrack}")
        fragments = parse_attention(text, emphasis)
        chunks: list[PromptChunk] = []
        ids: list[int] = []
        weights: list[float] = []
        token_count = 0
        last_comma = -1

        def close(is_last: bool) -> None:
            nonlocal ids, weights, token_count, last_comma
            token_count += len(ids) if is_last else CHUNK_LENGTH
            chunks.append(self._finish(ids, weights))
            ids, weights, last_comma = [], [], -1

        for fragment in fragments:
            if fragment.is_break:
                close(False)
                continue
            for token in self.encode(fragment.text):
                if token == COMMA_ID:
                    last_comma = len(ids)
                elif (
                    comma_padding_backtrack
                    and len(ids) == CHUNK_LENGTH
                    and last_comma != -1
                    and CHUNK_LENGTH - last_comma <= comma_padding_backtrack
                ):
                    cut = last_comma + 1
                    moved_ids, moved_weights = ids[cut:], weights[cut:]
                    ids, weights = ids[:cut], weights[:cut]
                    close(False)
                    ids, weights = moved_ids, moved_weights
                if len(ids) == CHUNK_LENGTH:
                    close(False)
                ids.append(token)
                weights.append(fragment.weight)
        if ids or not chunks:
            close(True)
        return TokenizedPrompt(text, tuple(chunks), token_count, tuple(fragments), emphasis)

    def pad_to_same_length(self, prompts: Sequence[TokenizedPrompt]) -> list[TokenizedPrompt]:
        """Append :meth:`empty_chunk` to the shorter prompts so all have the same number of chunks (A1111 batch)."""
        longest = max((len(p.chunks) for p in prompts), default=0)
        empty = self.empty_chunk()
        return [replace(p, chunks=p.chunks + (empty,) * (longest - len(p.chunks))) for p in prompts]

    def token_counter(self, prompt: str, steps: int = 20, *, negative: bool = False) -> tuple[int, int]:
        """A1111's token counter ``(count, max_length)`` for a raw prompt: extra networks removed, ``AND`` parts
        (positive prompt only) and every scheduled text tokenized; the one with the most tokens is reported."""
        texts = parse_prompt(prompt, steps, negative=negative).texts()
        best = max((self.tokenize_prompt(t) for t in texts), key=lambda tp: tp.token_count)
        return best.token_count, best.max_length


def tokenizers_for_family(family: str, *, text_fixer: str = "auto") -> tuple[ClipTokenizer, ...]:
    """The tokenizer(s) of a model family: ``sd1`` → (clip-l,), ``sd2`` → (openclip,), ``sdxl`` → (clip-l, openclip)."""
    kinds = {"sd1": ("clip-l",), "sd2": ("openclip",), "sdxl": ("clip-l", "openclip")}.get(family)
    if kinds is None:
        raise ValueError(f"unknown model family {family!r}; expected sd1, sd2 or sdxl")
    return tuple(ClipTokenizer(kind, text_fixer=text_fixer) for kind in kinds)


# ---------------------------------------------------------------------------------------------- emphasis


def apply_emphasis(z: torch.Tensor, weights: torch.Tensor, mode: str = "Original") -> torch.Tensor:
    """A1111's emphasis on text-encoder output ``z`` ``[..., T, D]`` with per-token ``weights`` ``[..., T]``.

    ``Original``: z' = z·w, then z' · mean(z)/mean(z'), the means taken over the *whole* tensor given — in A1111 that
    is one encoder call: the texts encoded together (a prompt's scheduled variants) for one chunk index, so call this
    once per chunk index to match it. ``No norm``: z·w. ``None`` and ``Ignore``: z unchanged. Pure: returns a new
    tensor in z's dtype; the pooled output (SDXL) is never emphasised.
    """
    if mode not in EMPHASIS_MODES:
        raise ValueError(f"unknown emphasis mode {mode!r}; expected one of {', '.join(EMPHASIS_MODES)}")
    if tuple(weights.shape) != tuple(z.shape[:-1]):
        raise ValueError(
            f"emphasis weights have shape {tuple(weights.shape)}; expected {tuple(z.shape[:-1])} to match z"
        )
    if mode in ("None", "Ignore"):
        return z
    scaled = z * weights.to(device=z.device, dtype=z.dtype).unsqueeze(-1)
    if mode == "No norm":
        return scaled
    return scaled * (z.mean() / scaled.mean())
