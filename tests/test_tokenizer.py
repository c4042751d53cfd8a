"""CLIP tokenizer and A1111 chunking.

Oracles: the published ids of "a photo of a cat"; Hugging Face's ``CLIPTokenizer`` (its own regex pre-tokenizer and
Rust BPE) built offline from the BPE merge list that instant-clip-tokenizer bundles (OpenAI's
``bpe_simple_vocab_16e6.txt``; no installed package ships vocab.json/merges.txt, open_clip is not installed); the
chunking rules of A1111's ``sd_hijack_clip.tokenize_line`` (shared/reference/a1111_forge.md §3.4).
"""

import importlib.util

import pytest
import torch

from glassforge.models.tokenizer import (
    BOS_ID,
    COMMA_ID,
    EOS_ID,
    ClipTokenizer,
    apply_emphasis,
    bundled_bpe_merges,
    tokenizers_for_family,
)

CAT, DOG = 2368, 1929  # "cat</w>", "dog</w>"
HAS_FTFY = importlib.util.find_spec("ftfy") is not None


@pytest.fixture(scope="module")
def clip_l():
    return ClipTokenizer("clip-l", text_fixer="nfc")


@pytest.fixture(scope="module")
def openclip():
    return ClipTokenizer("openclip", text_fixer="nfc")


@pytest.fixture(scope="module")
def hf_clip():
    """transformers' CLIPTokenizer from the bundled merges: vocab = 256 bytes, 256 bytes + '</w>', merges, specials."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    merges = bundled_bpe_merges()
    assert merges is not None, "instant-clip-tokenizer no longer bundles bpe_simple_vocab_16e6.txt"
    byte_chars = list(bytes_to_unicode().values())
    vocab = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={token: i for i, token in enumerate(vocab)}, merges=list(merges))


# ------------------------------------------------------------------------------------------------ ids


def test_published_example_ids(clip_l, hf_clip):
    expected = [49406, 320, 1125, 539, 320, 2368, 49407]
    assert [BOS_ID, *clip_l.encode("a photo of a cat"), EOS_ID] == expected
    assert hf_clip("a photo of a cat").input_ids == expected  # the oracle is built from the real vocabulary


def test_bundled_merges_are_the_clip_merge_list():
    merges = bundled_bpe_merges()
    assert len(merges) == 48894
    assert merges[0] == ("i", "n") and merges[-1] == ("jeky", "ll</w>")


PROMPTS = [
    "masterpiece, best quality, 1girl, solo, long hair, looking at viewer",
    "Hello,  World!!  What's up?? (ok) [x] {y} <z> a|b a:b 'quoted' \"double\"",
    "CAT Cat cAt cat",  # case folding
    "café naïve Ångström Straße façade",  # accents
    "cafe\u0301 vs caf\u00e9",  # NFC: decomposed = composed
    "😀🐱 emoji 👩‍👩‍👧 🇯🇵 ❤️",
    "12345 3.14159 1girl 2boys 1990s 4k 8K",
    "many    spaces\tand\ttabs\n\nand newlines   ",
    "pneumonoultramicroscopicsilicovolcanoconiosis supercalifragilisticexpialidocious" * 2,
    "日本語のテキスト、東京タワー。한국어 中文",
    "it's we're they've I'M you'll he'd DON'T",
    "a,b.c;d:e!f?g-h_i/j\\k@l#m$n%o^p&q*r+s=t~u`v",
    "ＡＢＣ（ｆｕｌｌｗｉｄｔｈ）",
    "",
    "   ",
]


@pytest.mark.parametrize("text", PROMPTS)
def test_ids_match_transformers_clip_tokenizer(clip_l, openclip, hf_clip, text):
    expected = hf_clip(text, add_special_tokens=False).input_ids
    assert clip_l.encode(text) == expected
    assert openclip.encode(text) == expected  # same vocabulary; differences are only in clean-up and padding


def test_long_prompt_ids_match(clip_l, hf_clip):
    text = ", ".join(f"tag{i} word{i * 7}" for i in range(300))
    assert clip_l.encode(text) == hf_clip(text, add_special_tokens=False).input_ids


def test_special_token_names_map_to_their_ids(clip_l, openclip, hf_clip):
    assert clip_l.encode("a <|endoftext|> b") == [320, EOS_ID, 321]
    assert hf_clip("a <|endoftext|> b", add_special_tokens=False).input_ids == [320, EOS_ID, 321]
    assert openclip.encode("<start_of_text>x") == [BOS_ID, *openclip.encode("x")]


def test_lowercasing_uses_python_rules_like_a1111(clip_l):
    # A1111's tokenizers lowercase with Python's str.lower (final sigma ς); the fast HF tokenizer does not
    assert clip_l.encode("ΟΔΟΣ") == clip_l.encode("οδος")


def test_normalization_and_text_fixer(clip_l, openclip):
    assert clip_l.normalize("  A\t\nB  ") == "a b"
    assert openclip.normalize("fish &amp;amp; chips") == "fish & chips"  # OpenCLIP unescapes HTML twice
    assert clip_l.text_fixer == "nfc"
    expected = "ftfy" if HAS_FTFY else "nfc"
    assert ClipTokenizer().text_fixer == expected
    if not HAS_FTFY:
        with pytest.raises(ImportError, match="pip install ftfy"):
            ClipTokenizer(text_fixer="ftfy")


@pytest.mark.skipif(not HAS_FTFY, reason="ftfy is not installed")
def test_ftfy_cleanup_as_in_a1111():
    tok = ClipTokenizer(text_fixer="ftfy")
    assert tok.encode("ＡＢＣ（ｘ）") == tok.encode("abc(x)")
    assert tok.encode("it’s “ok”") == tok.encode('it\'s "ok"')


def test_token_texts(clip_l, openclip, hf_clip):
    assert [clip_l.token_text(i) for i in (BOS_ID, 1125, EOS_ID)] == [
        "<|startoftext|>",
        "photo</w>",
        "<|endoftext|>",
    ]
    assert [openclip.token_text(i) for i in (BOS_ID, EOS_ID, 0)] == ["<start_of_text>", "<end_of_text>", "!"]
    (cafe,) = clip_l.encode("café")
    assert clip_l.token_text(cafe) == "café</w>" and clip_l.vocab_token(cafe) == "cafÃ©</w>"
    partial = clip_l.encode("😀😀😀")  # emoji pieces hold incomplete UTF-8 sequences
    assert clip_l.decode(partial) == "😀😀😀"
    assert all(clip_l.vocab_token(i) == hf_clip.convert_ids_to_tokens(i) for i in range(0, 49408, 13))
    assert clip_l.decode(clip_l.encode("A photo of  a CAT!")) == "a photo of a cat !"
    with pytest.raises(ValueError, match="outside the CLIP vocabulary"):
        clip_l.token_text(49408)


def test_family_tokenizers_and_pad_ids():
    (sd1,) = tokenizers_for_family("sd1")
    (sd2,) = tokenizers_for_family("sd2")
    xl_l, xl_g = tokenizers_for_family("sdxl")
    assert (sd1.pad_id, sd2.pad_id, xl_l.pad_id, xl_g.pad_id) == (EOS_ID, 0, EOS_ID, 0)
    with pytest.raises(ValueError, match="expected sd1, sd2 or sdxl"):
        tokenizers_for_family("flux")


# --------------------------------------------------------------------------------------------- chunks


def body(chunk):
    """The prompt tokens of a chunk (between BOS and the first EOS)."""
    return list(chunk.ids[1 : chunk.ids.index(EOS_ID)])


def test_empty_prompt_is_bos_eos_padding(clip_l, openclip):
    tp = clip_l.tokenize_prompt("")
    assert len(tp.chunks) == 1 and tp.counter == "0/75"
    assert tp.chunks[0].ids == (BOS_ID,) + (EOS_ID,) * 76
    assert tp.chunks[0].weights == (1.0,) * 77
    assert openclip.tokenize_prompt("").chunks[0].ids == (BOS_ID, EOS_ID) + (0,) * 75
    assert openclip.empty_chunk() == openclip.tokenize_prompt("").chunks[0]


def test_short_prompt_chunk_layout(clip_l, openclip):
    tp = clip_l.tokenize_prompt("a photo of a cat")
    chunk = tp.chunks[0]
    assert len(chunk.ids) == len(chunk.weights) == len(chunk.texts) == 77
    assert chunk.ids[:7] == (49406, 320, 1125, 539, 320, 2368, 49407) and set(chunk.ids[7:]) == {EOS_ID}
    assert (
        tp.counter == "5/75"
        and tp.ids_tensor().shape == (1, 77)
        and tp.weights_tensor().dtype == torch.float32
    )
    og = openclip.tokenize_prompt("a photo of a cat").chunks[0]
    assert og.ids[:7] == chunk.ids[:7] and set(og.ids[7:]) == {0}  # everything after the first EOS is pad 0


def test_weights_are_aligned_to_tokens(clip_l):
    word = "supercalifragilisticexpialidocious"
    n = len(clip_l.encode(word))
    tp = clip_l.tokenize_prompt(f"a ({word}:1.3) [cat] dog")
    chunk = tp.chunks[0]
    assert body(chunk) == [320, *clip_l.encode(word), CAT, DOG]
    assert list(chunk.weights[: n + 5]) == pytest.approx([1.0, 1.0] + [1.3] * n + [1 / 1.1, 1.0, 1.0])
    assert all(w == 1.0 for w in chunk.weights[n + 4 :])  # EOS and padding
    assert chunk.texts[2 + n] == "cat</w>"


def test_fragments_are_tokenized_separately(clip_l):
    # A1111 tokenizes each emphasis run on its own, so brackets split words
    separate = clip_l.encode("hello") + clip_l.encode("world")
    assert body(clip_l.tokenize_prompt("(hello)world").chunks[0]) == separate
    assert clip_l.encode("helloworld") != separate


def test_160_tokens_make_three_chunks(clip_l):
    tp = clip_l.tokenize_prompt("cat " * 160)
    assert [len(body(c)) for c in tp.chunks] == [75, 75, 10]
    assert all(c.ids[0] == BOS_ID and c.ids[76] == EOS_ID for c in tp.chunks)
    assert tp.token_count == 160 and tp.counter == "160/225" and tp.ids_tensor().shape == (3, 77)


def test_comma_backtrack_moves_the_words_after_the_last_comma(clip_l):
    tp = clip_l.tokenize_prompt("cat " * 70 + ", " + "dog " * 10)
    assert body(tp.chunks[0]) == [CAT] * 70 + [COMMA_ID]
    assert body(tp.chunks[1]) == [DOG] * 10
    assert tp.token_count == 75 + 10  # a chunk closed early still counts 75
    plain = clip_l.tokenize_prompt("cat " * 70 + ", " + "dog " * 10, comma_padding_backtrack=0)
    assert body(plain.chunks[0]) == [CAT] * 70 + [COMMA_ID] + [DOG] * 4 and body(plain.chunks[1]) == [DOG] * 6


def test_comma_backtrack_window_is_20_tokens(clip_l):
    at_limit = clip_l.tokenize_prompt("cat " * 55 + ", " + "dog " * 30)  # comma 20 tokens before the end
    assert body(at_limit.chunks[0]) == [CAT] * 55 + [COMMA_ID] and len(body(at_limit.chunks[1])) == 30
    too_far = clip_l.tokenize_prompt("cat " * 54 + ", " + "dog " * 30)  # 21 back: no backtrack
    assert body(too_far.chunks[0]) == [CAT] * 54 + [COMMA_ID] + [DOG] * 20


def test_comma_as_76th_token_starts_the_next_chunk(clip_l):
    tp = clip_l.tokenize_prompt("cat " * 75 + ", dog")
    assert body(tp.chunks[0]) == [CAT] * 75 and body(tp.chunks[1]) == [COMMA_ID, DOG]


def test_break_starts_a_new_padded_chunk(clip_l):
    tp = clip_l.tokenize_prompt("a cat BREAK (dog:1.5)")
    assert [body(c) for c in tp.chunks] == [[320, CAT], [DOG]]
    assert tp.chunks[1].weights[1] == 1.5 and tp.counter == "76/150"
    assert [body(c) for c in clip_l.tokenize_prompt("BREAK cat").chunks] == [[], [CAT]]
    assert len(clip_l.tokenize_prompt("cat BREAK").chunks) == 1
    quirk = clip_l.tokenize_prompt("(a BREAK b)").chunks  # A1111: inside brackets it is the word "break"
    assert len(quirk) == 1 and body(quirk[0]) == [320, 2568, 321]
    assert quirk[0].weights[2] == pytest.approx(-1.1)


def test_emphasis_none_keeps_brackets_as_tokens(clip_l):
    tp = clip_l.tokenize_prompt("(cat:1.5)", emphasis="None")
    assert body(tp.chunks[0]) == clip_l.encode("(cat:1.5)") and set(tp.chunks[0].weights) == {1.0}


def test_pad_to_same_length(openclip):
    short, long = openclip.tokenize_prompt("cat"), openclip.tokenize_prompt("cat " * 80)
    padded = openclip.pad_to_same_length([short, long])
    assert [len(p.chunks) for p in padded] == [2, 2] and padded[0].chunks[1] == openclip.empty_chunk()


def test_token_counter_like_a1111(clip_l):
    assert clip_l.token_counter("a photo of a cat") == (5, 75)
    # extra networks removed, AND parts and every scheduled text counted, the longest reported
    assert clip_l.token_counter("<lora:x:1> a [cat:big fluffy dog:5] AND b", steps=20) == (4, 75)
    assert clip_l.token_counter("cat " * 80) == (80, 150)


# ------------------------------------------------------------------------------------------- emphasis


def test_original_emphasis_restores_the_mean_exactly():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(2, 77, 16, generator=gen, dtype=torch.float64) + 0.3
    w = 1 + 0.4 * torch.rand(2, 77, generator=gen, dtype=torch.float64)
    out = apply_emphasis(z, w, "Original")
    assert out.mean().item() == pytest.approx(z.mean().item(), rel=1e-13)
    scaled = z * w[..., None]
    torch.testing.assert_close(out, scaled * (z.mean() / scaled.mean()), rtol=0, atol=0)
    assert not torch.allclose(out, z)


def test_other_emphasis_modes():
    z = torch.randn(1, 77, 8, generator=torch.Generator().manual_seed(1))
    w = torch.ones(1, 77)
    w[0, 3] = 1.5
    torch.testing.assert_close(apply_emphasis(z, w, "No norm"), z * w[..., None])
    assert apply_emphasis(z, w, "None") is z and apply_emphasis(z, w, "Ignore") is z
    torch.testing.assert_close(apply_emphasis(z, torch.ones(1, 77), "Original"), z)
    with pytest.raises(ValueError, match=r"expected \(1, 77\)"):
        apply_emphasis(z, torch.ones(77), "Original")
