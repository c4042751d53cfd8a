"""A1111 infotext: writing, parsing, PNG/JPEG/WebP storage, file naming, model hashes, png-info."""

import argparse
import hashlib
import json
import os
import struct
import threading
import zlib

import pytest
from PIL import Image

from glassforge import pngfile
from glassforge.infotext import (
    GenerationParams,
    a1111_schedule_label,
    parse_generation_parameters,
    quote,
    uses_emphasis,
)

# shared/reference/a1111_forge.md §4.1, "Example" (A1111 1.10 defaults, SD1.5), verbatim.
A1111_EXAMPLE = """\
a photo of a (red:1.2) fox in a [snowy|misty] forest
Negative prompt: blurry, lowres
Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234567890, Size: 512x512, \
Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.7, Clip skip: 2, Hires upscale: 2, \
Hires upscaler: Latent, Lora hashes: "foxstyle: 0123456789ab", Version: v1.10.1"""
# §4.1, "Older example (parser docstring)", verbatim.
A1111_OLD_EXAMPLE = (
    "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 965400086, Size: 512x512, Model hash: 45dee52b"
)


# ---------------------------------------------------------------- A1111-written examples


def test_parse_a1111_example_fields():
    p = GenerationParams.from_infotext(A1111_EXAMPLE)
    assert p.prompt == "a photo of a (red:1.2) fox in a [snowy|misty] forest"
    assert p.negative_prompt == "blurry, lowres"
    assert (p.steps, p.sampler, p.schedule, p.cfg_scale, p.seed) == (
        20,
        "DPM++ 2M",
        "Karras",
        7.0,
        1234567890,
    )
    assert (p.width, p.height, p.model_hash, p.model) == (512, 512, "6ce0161689", "v1-5-pruned-emaonly")
    assert (p.denoising_strength, p.clip_skip, p.version, p.rng) == (0.7, 2, "v1.10.1", "GPU")
    assert p.extra == {
        "Hires upscale": "2",
        "Hires upscaler": "Latent",
        "Lora hashes": "foxstyle: 0123456789ab",
    }
    assert list(p.extra) == ["Hires upscale", "Hires upscaler", "Lora hashes"]


def test_a1111_example_is_rewritten_byte_for_byte():
    assert GenerationParams.from_infotext(A1111_EXAMPLE).to_infotext() == A1111_EXAMPLE


def test_a1111_dict_of_the_example():
    res = parse_generation_parameters(A1111_EXAMPLE)
    assert res["Prompt"] == "a photo of a (red:1.2) fox in a [snowy|misty] forest"
    assert res["Negative prompt"] == "blurry, lowres"
    assert (res["Size-1"], res["Size-2"]) == ("512", "512") and "Size" not in res
    assert res["Lora hashes"] == "foxstyle: 0123456789ab"  # JSON-decoded
    assert res["Clip skip"] == "2" and res["CFG scale"] == "7" and res["Steps"] == "20"
    assert res["Emphasis"] == "Original"  # "(red:1.2)" uses emphasis
    # defaults A1111 fills in for keys that are absent
    assert res["RNG"] == "GPU" and res["Hires sampler"] == "Use same sampler"
    assert (res["Hires resize-1"], res["Hires resize-2"]) == (0, 0)
    assert res["Hires checkpoint"] == "Use same checkpoint" and res["Masked area padding"] == 32
    assert res["FP8 weight"] == "Disable" and "Cache FP16 weight for LoRA" not in res
    assert "Old prompt editing timelines" not in res and "Downcast alphas_cumprod" not in res  # v1.10.1


def test_parse_a1111_old_example():
    p = GenerationParams.from_infotext(A1111_OLD_EXAMPLE)
    assert (p.prompt, p.negative_prompt) == ("", "")
    assert (p.steps, p.sampler, p.cfg_scale, p.seed) == (20, "Euler a", 7.0, 965400086)
    assert p.model_hash == "45dee52b"  # the legacy 8-hex hash
    assert (p.clip_skip, p.schedule, p.rng, p.extra) == (1, "Automatic", "GPU", {})
    res = parse_generation_parameters(A1111_OLD_EXAMPLE)
    assert res["Clip skip"] == "1" and res["Schedule type"] == "Automatic" and "Emphasis" not in res


def test_version_backcompat_flags_as_a1111():
    old = "a [cat:dog:5]\nSteps: 20, Sampler: DDIM, CFG scale: 7, Version: v1.5.1"
    res = parse_generation_parameters(old)
    assert res["Old prompt editing timelines"] is True and res["Pad conds v0"] is True
    assert res["Downcast alphas_cumprod"] is True
    forge = "x\nSteps: 20, Sampler: Euler, CFG scale: 7, Version: f2.0.1v1.10.1-previous-506-gd1e40361"
    assert "Downcast alphas_cumprod" not in parse_generation_parameters(forge)


# ---------------------------------------------------------------- writing rules


def test_writing_key_order_and_formatting():
    p = GenerationParams(
        prompt="a cat",
        negative_prompt="ugly",
        steps=30,
        sampler="Euler a",
        schedule="Automatic",
        cfg_scale=7.5,
        seed=42,
        width=768,
        height=512,
        model_hash="0123456789",
        model="sd15",
        vae_hash="abcdef0123",
        vae="vae-ft-mse",
        variation_seed=7,
        variation_seed_strength=0.25,
        seed_resize_from_w=512,
        seed_resize_from_h=512,
        denoising_strength=1.0,
        clip_skip=2,
        ensd=31337,
        tiling=True,
        version="glassforge 0.1.0",
        user="me",
        extra={
            "Module 1": "clip_l",
            "Emphasis": "Original",
            "Face restoration": "CodeFormer",
            "Flag": "Flag",
        },
    )
    assert p.to_infotext() == (
        "a cat\nNegative prompt: ugly\n"
        "Steps: 30, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7.5, Seed: 42, "
        "Face restoration: CodeFormer, Size: 768x512, Model hash: 0123456789, Model: sd15, "
        "VAE hash: abcdef0123, VAE: vae-ft-mse, Variation seed: 7, Variation seed strength: 0.25, "
        "Seed resize from: 512x512, Denoising strength: 1, Clip skip: 2, ENSD: 31337, RNG: CPU, "
        "Tiling: True, "
        "Emphasis: Original, Flag, Version: glassforge 0.1.0, User: me, Module 1: clip_l"
    )


def test_defaults_and_omissions():
    p = GenerationParams(prompt="a cat", seed=1, rng="GPU", ensd=31337, sampler="Euler", variation_seed=9)
    # empty negative → no line; clip skip 1, GPU RNG, ENSD for a sampler that draws no noise and a
    # variation seed with strength 0 are not written; None fields are skipped.
    assert p.to_infotext() == (
        "a cat\nSteps: 20, Sampler: Euler, Schedule type: Automatic, CFG scale: 7, Seed: 1, Size: 512x512"
    )
    assert "ENSD: 31337" in GenerationParams(sampler="DPM2 a", ensd=31337).to_infotext()
    assert "ENSD" not in GenerationParams(sampler="DPM++ 2M SDE", ensd=31337).to_infotext()  # Brownian
    assert "ENSD" not in GenerationParams(sampler="Euler a", ensd=31337, extra={"Eta": "0"}).to_infotext()


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("plain", "plain"),
        ("a, b", '"a, b"'),
        ("k: v", '"k: v"'),
        ("two\nlines", '"two\\nlines"'),
        ('say "hi", ok', '"say \\"hi\\", ok"'),
        ("猫, 犬", '"猫, 犬"'),  # ensure_ascii=False
        ('a"b', 'a"b'),  # A1111 writes a lone quote raw
        (7.0, "7"),
        (0.7, "0.7"),
        (True, "True"),
    ],
)
def test_quote_rule(value, written):
    assert quote(value) == written


def test_extra_keys_are_checked():
    with pytest.raises(ValueError, match="'Steps' is a GenerationParams field"):
        GenerationParams(extra={"Steps": 3}).to_infotext()
    with pytest.raises(ValueError, match="cannot be read back"):
        GenerationParams(extra={"a,b": 1}).to_infotext()


def test_schedule_label_as_a1111_writes_it():
    assert a1111_schedule_label("DPM++ 2M", "Automatic") == "Karras"  # the sampler's default
    assert a1111_schedule_label("DPM++ 2M SDE", None) == "Exponential"
    assert a1111_schedule_label("Euler a", "Automatic") == "Automatic"  # no default schedule
    assert a1111_schedule_label("DDIM", "Automatic") == "Automatic"  # timestep sampler
    assert a1111_schedule_label("Euler", "karras") == "Karras"
    assert a1111_schedule_label("Euler", "sgm_uniform") == "SGM Uniform"


# ---------------------------------------------------------------- round trips

EXTRA = {
    "Hires upscale": "2",
    "Hires resize": "1024x1536",
    "Lora hashes": "foxstyle: 0123456789ab, cat: ba9876543210",
    "Odd": '"quoted"',
    "Backslash": "C:\\models\\x.safetensors",
    "Spaces": "  padded  ",
    "Lines": "one\ntwo",
    "Unicode": "猫 🐱",
    "Diffusion in Low Bits": "bnb-nf4",
}
CASES = {
    "plain": GenerationParams(prompt="a cat", negative_prompt="ugly", seed=3, model="m", model_hash="0" * 10),
    "multi-line": GenerationParams(prompt="a cat\nsitting\non a mat", negative_prompt="ugly\nblurry", seed=4),
    "punctuation": GenerationParams(
        prompt='a "quoted" cat: (big:1.3), [small], Steps: 5, Seed: 9, Size: 1x1',
        negative_prompt='bad: "hands", text, watermark',
        seed=5,
    ),
    "key-value lines in the prompt": GenerationParams(
        prompt="Steps: 1, Sampler: x, CFG scale: 2\nsecond line", negative_prompt="a: 1, b: 2, c: 3", seed=6
    ),
    "empty negative": GenerationParams(prompt="a cat", negative_prompt="", seed=7),
    "empty prompts": GenerationParams(prompt="", negative_prompt="", seed=8),
    "unicode": GenerationParams(
        prompt="猫が座っている, 🐱, «café»", negative_prompt="ぼやけた", seed=9, model="モデル"
    ),
    "everything": GenerationParams(
        prompt="x",
        steps=28,
        sampler="DPM++ 2M SDE",
        schedule="Exponential",
        cfg_scale=4.5,
        seed=4294967294,
        width=1024,
        height=768,
        vae="sdxl_vae, fp16 fix",
        variation_seed=12,
        variation_seed_strength=0.3,
        seed_resize_from_w=640,
        seed_resize_from_h=448,
        denoising_strength=0.55,
        clip_skip=2,
        rng="NV",
        tiling=True,
        version="glassforge 0.1.0",
        user="u",
        extra=EXTRA,
    ),
}


@pytest.mark.parametrize("params", CASES.values(), ids=CASES.keys())
def test_round_trip(params):
    text = params.to_infotext()
    back = GenerationParams.from_infotext(text)
    assert back == params
    assert list(back.extra) == list(params.extra)  # order of unknown keys kept
    assert back.to_infotext() == text


def test_forge_tail_keys_stay_after_version():
    text = CASES["everything"].to_infotext()
    assert text.endswith("Version: glassforge 0.1.0, User: u, Diffusion in Low Bits: bnb-nf4")


def test_a_short_last_line_belongs_to_the_prompt():
    p = GenerationParams.from_infotext("a cat\nstyle: oil, light: soft")  # only 2 pairs
    assert p.prompt == "a cat\nstyle: oil, light: soft" and p.steps == 20 and p.extra == {}


# ---------------------------------------------------------------- legacy sampler names


@pytest.mark.parametrize(
    ("written", "sampler", "schedule"),
    [
        ("DPM++ 2M Karras", "DPM++ 2M", "Karras"),
        ("DPM++ SDE Karras", "DPM++ SDE", "Karras"),
        ("DPM++ 2M SDE Heun Exponential", "DPM++ 2M SDE Heun", "Exponential"),
        ("DPM2 a Karras", "DPM2 a", "Karras"),
        ("LMS Karras", "LMS", "Karras"),
        ("k_dpmpp_2m_ka", "DPM++ 2M", "Karras"),
        ("Euler A Turbo", "Euler a", "Turbo"),  # Forge 1
        ("Euler SGMUniform", "Euler", "SGM Uniform"),
        ("Euler a", "Euler a", "Automatic"),
        ("DDIM", "DDIM", "Automatic"),
        ("Some Extension Sampler", "Some Extension Sampler", "Automatic"),  # unknown: kept
    ],
)
def test_legacy_sampler_names(written, sampler, schedule):
    p = GenerationParams.from_infotext(f"a cat\nSteps: 20, Sampler: {written}, CFG scale: 7, Seed: 1")
    assert (p.sampler, p.schedule) == (sampler, schedule)


def test_bad_typed_value_names_the_key():
    with pytest.raises(ValueError, match="Steps must be an integer, got 'many'"):
        GenerationParams.from_infotext("x\nSteps: many, Sampler: Euler, CFG scale: 7")
    with pytest.raises(ValueError, match="Size must be WIDTHxHEIGHT"):
        GenerationParams.from_infotext("x\nSteps: 2, Sampler: Euler, Size: big")


def test_civitai_flux_fixups_as_forge():
    text = (
        "x\nSteps: 20, Sampler: Undefined, CFG scale: 3.5, Seed: 1, Clip skip: 2, Size: 896x1152, "
        "Civitai resources: FLUX"
    )
    res = parse_generation_parameters(text)
    assert (res["Sampler"], res["Schedule type"], res["CFG scale"]) == ("Euler", "Simple", "1")
    assert res["Distilled CFG Scale"] == "3.5" and res["Clip skip"] == "1"


@pytest.mark.parametrize(
    ("prompt", "emphasis"),
    [
        ("a cat", False),
        ("a (cat)", True),
        ("a [cat]", True),
        ("a (cat:1.0)", False),
        ("a \\(cat\\)", False),
        ("a cat BREAK a dog", False),
        ("a (cat", True),  # unclosed bracket still weights the rest
        ("()", False),
    ],
)
def test_emphasis_detection(prompt, emphasis):
    assert uses_emphasis(prompt) is emphasis


# ---------------------------------------------------------------- image files


def _image(seed: int = 0) -> Image.Image:
    return Image.frombytes("RGB", (8, 8), bytes((i * 7 + seed) % 256 for i in range(8 * 8 * 3)))


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0] == zlib.crc32(kind + body)
        chunks.append((kind, body))
        pos += 12 + length
    return chunks


def test_png_parameters_chunk_round_trip(tmp_path):
    params = CASES["everything"]
    path = pngfile.save_image(_image(), tmp_path, params.to_infotext(), params.seed)
    assert path.name == "00000-4294967294.png"
    with Image.open(path) as im:
        assert im.info["parameters"] == params.to_infotext()
        assert im.tobytes() == _image().tobytes()
    assert GenerationParams.from_infotext(pngfile.read_infotext(path)) == params


def test_png_latin1_text_is_tEXt_and_other_text_is_iTXt(tmp_path):
    latin = GenerationParams(prompt="café au lait", seed=1).to_infotext()
    chunks = _png_chunks(pngfile.encode_image(_image(), latin))
    assert (b"tEXt", b"parameters\x00" + latin.encode("latin-1")) in chunks
    japanese = GenerationParams(prompt="猫", seed=1).to_infotext()
    chunks = dict(_png_chunks(pngfile.encode_image(_image(), japanese)))
    # iTXt: keyword, NUL, compression flag 0, method 0, empty language, NUL, empty translated key, NUL
    assert chunks[b"iTXt"] == b"parameters\x00\x00\x00\x00\x00" + japanese.encode("utf-8")
    assert b"tEXt" not in chunks
    path = tmp_path / "j.png"
    path.write_bytes(pngfile.encode_image(_image(), japanese))
    assert pngfile.read_infotext(path) == japanese


@pytest.mark.parametrize("fmt", ["jpg", "webp"])
def test_jpeg_and_webp_exif_user_comment(tmp_path, fmt):
    params = CASES["unicode"]
    path = pngfile.save_image(_image(), tmp_path, params.to_infotext(), params.seed, fmt=fmt)
    assert path.name == f"00000-9.{fmt}"
    with Image.open(path) as im:
        raw = im.getexif().get_ifd(0x8769)[0x9286]
    assert raw == b"UNICODE\x00" + params.to_infotext().encode("utf-16-be")  # piexif's "unicode" encoding
    assert GenerationParams.from_infotext(pngfile.read_infotext(path)) == params


def test_counter_continues_after_the_highest_and_never_overwrites(tmp_path):
    assert pngfile.next_counter(tmp_path / "missing") == 0
    (tmp_path / "00012-1234567.png").write_bytes(b"keep me")
    (tmp_path / "00003-1.png").write_bytes(b"keep me too")
    (tmp_path / "notes.txt").write_text("no counter")
    assert pngfile.next_counter(tmp_path) == 13
    paths = [
        pngfile.save_image(_image(i), tmp_path, f"p{i}\nSteps: 1, Seed: {i}, Size: 8x8", i) for i in range(3)
    ]
    assert [p.name for p in paths] == ["00013-0.png", "00014-1.png", "00015-2.png"]
    assert (tmp_path / "00012-1234567.png").read_bytes() == b"keep me"
    assert (tmp_path / "00003-1.png").read_bytes() == b"keep me too"
    # the exclusive create refuses an existing name and leaves it alone
    assert pngfile._create_exclusive(tmp_path / "00003-1.png", b"new") is False
    assert (tmp_path / "00003-1.png").read_bytes() == b"keep me too"
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]  # no temporary files left


def test_concurrent_saves_get_distinct_files(tmp_path):
    saved: list = []

    def worker(k: int) -> None:
        for i in range(10):
            saved.append(
                pngfile.save_image(_image(k), tmp_path, f"w{k} i{i}\nSteps: 1, Seed: 1, Size: 8x8", 1)
            )

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(saved)) == 30
    texts = sorted(pngfile.read_infotext(p).split("\n")[0] for p in saved)
    assert texts == sorted(f"w{k} i{i}" for k in range(3) for i in range(10))


# ---------------------------------------------------------------- model hashes


def test_model_hash_is_sha256_prefix_and_cached(tmp_path):
    model = tmp_path / "model.safetensors"
    data = os.urandom(3 * 1024 * 1024 + 17)
    model.write_bytes(data)
    cache = tmp_path / "cache" / "hashes.json"
    expected = hashlib.sha256(data).hexdigest()
    assert pngfile.model_hash(model) == expected[:10]  # no cache
    assert pngfile.model_hash(model, cache) == expected[:10]
    entry = json.loads(cache.read_text())["sha256"][str(model.resolve())]
    assert entry == {"size": len(data), "mtime_ns": model.stat().st_mtime_ns, "sha256": expected}
    # The second call reads the cache: a (deliberately wrong) cached digest is what it returns.
    stored = json.loads(cache.read_text())
    stored["sha256"][str(model.resolve())]["sha256"] = "f" * 64
    cache.write_text(json.dumps(stored))
    assert pngfile.model_hash(model, cache) == "f" * 10
    # A changed file (size and mtime differ) is hashed again and the entry replaced.
    model.write_bytes(data + b"!")
    assert pngfile.model_hash(model, cache) == hashlib.sha256(data + b"!").hexdigest()[:10]
    assert json.loads(cache.read_text())["sha256"][str(model.resolve())]["size"] == len(data) + 1
    # A1111's pre-1.0 hash: sha256 of 64 KiB at offset 1 MiB, 8 hex digits.
    assert pngfile.legacy_model_hash(model) == hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]


def test_corrupt_cache_file_is_rebuilt(tmp_path):
    model = tmp_path / "m.ckpt"
    model.write_bytes(b"weights")
    cache = tmp_path / "hashes.json"
    cache.write_text("{not json")
    assert pngfile.model_hash(model, cache) == hashlib.sha256(b"weights").hexdigest()[:10]
    assert str(model.resolve()) in json.loads(cache.read_text())["sha256"]


# ---------------------------------------------------------------- glassforge png-info


def _png_info(argv):
    parser = argparse.ArgumentParser(prog="glassforge")
    pngfile.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["png-info", *argv])
    return args.func(args)


def test_png_info_prints_text_and_json(tmp_path, capsys):
    path = tmp_path / "x.png"
    pngfile.write_image(_image(), path, A1111_EXAMPLE)
    assert _png_info([str(path)]) == 0
    assert capsys.readouterr().out == A1111_EXAMPLE + "\n"
    assert _png_info([str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["info"] == A1111_EXAMPLE
    assert out["parameters"]["sampler"] == "DPM++ 2M" and out["parameters"]["seed"] == 1234567890
    assert out["parameters"]["extra"]["Lora hashes"] == "foxstyle: 0123456789ab"
    assert out["a1111"]["Size-1"] == "512" and out["a1111"]["Clip skip"] == "2"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_text("Steps: 20, Sampler: Euler"), "not a PNG, JPEG or WebP image"),
        (lambda p: _image().save(p, format="PNG"), "has no generation parameters"),
        (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40), "image"),
    ],
    ids=["missing", "text file", "no parameters", "broken png"],
)
def test_png_info_bad_file_is_one_line_and_exit_2(tmp_path, capsys, make, reason):
    path = tmp_path / "bad.png"
    make(path)
    assert _png_info([str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and reason in captured.err and str(path) in captured.err
