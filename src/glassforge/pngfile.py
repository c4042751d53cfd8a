"""Images with their infotext: PNG ``parameters`` chunk, JPEG/WebP EXIF, file names, model hashes.

* PNG: the infotext goes in a ``parameters`` text chunk through Pillow's ``PngInfo.add_text``, as
  A1111 does: a ``tEXt`` chunk when the text is Latin-1, an uncompressed ``iTXt`` (UTF-8) otherwise.
* JPEG/WebP: A1111 stores it as the EXIF ``UserComment`` with the ``UNICODE`` prefix and UTF-16-BE
  text (piexif's encoding); it is written and read here with Pillow alone.
* File names: ``<counter:05>-<seed>.<ext>`` (A1111's default "[seed]" pattern), the counter one past
  the highest in the folder, and a file is never overwritten.
* ``Model hash``: the first 10 hex digits of the file's sha256 (A1111 ≥ 1.0), cached in a JSON file
  keyed by path and checked against size and mtime.

``glassforge png-info FILE [--json]`` is :func:`add_parser` + :func:`run`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from .infotext import GenerationParams, parse_generation_parameters

if TYPE_CHECKING:
    import argparse

    from PIL import Image

PNG_KEY = "parameters"
_EXIF_IFD = 0x8769  # ExifIFD pointer
_USER_COMMENT = 0x9286
_UNICODE = b"UNICODE\x00"
_ASCII = b"ASCII\x00\x00\x00"
_FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}
JPEG_QUALITY = 80  # A1111's default jpeg_quality (also used for WebP)

# ---------------------------------------------------------------- writing


def encode_image(
    image: Image.Image,
    infotext: str | None,
    *,
    fmt: str = "png",
    extra_text: Mapping[str, str] | None = None,
    quality: int = JPEG_QUALITY,
) -> bytes:
    """The image file's bytes with the infotext embedded the way A1111 embeds it.

    ``extra_text`` adds more PNG text chunks (e.g. a workflow); it is ignored for JPEG/WebP.
    """
    fmt = fmt.lower().lstrip(".")
    if fmt not in _FORMATS:
        raise ValueError(f"unsupported image format {fmt!r}; expected one of: png, jpg, jpeg, webp")
    buf = io.BytesIO()
    if _FORMATS[fmt] == "PNG":
        from PIL import PngImagePlugin

        info = PngImagePlugin.PngInfo()
        texts = dict(extra_text or {})
        if infotext is not None:
            texts = {PNG_KEY: infotext, **{k: v for k, v in texts.items() if k != PNG_KEY}}
        for key, value in texts.items():
            info.add_text(key, str(value))  # tEXt if Latin-1, else iTXt (Pillow's rule, as in A1111)
        image.save(buf, format="PNG", pnginfo=info)
    else:
        from PIL import Image as PILImage

        if image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        kwargs: dict = {"quality": quality}
        if infotext is not None:
            exif = PILImage.Exif()
            exif.get_ifd(_EXIF_IFD)[_USER_COMMENT] = _UNICODE + infotext.encode("utf-16-be")
            kwargs["exif"] = exif.tobytes()
        image.save(buf, format=_FORMATS[fmt], **kwargs)
    return buf.getvalue()


def write_image(image: Image.Image, path: str | os.PathLike, infotext: str | None, **kwargs) -> Path:
    """Write ``image`` to ``path`` (format from the suffix) with the infotext embedded. Overwrites."""
    path = Path(path)
    Path(path).write_bytes(encode_image(image, infotext, fmt=path.suffix or "png", **kwargs))
    return path


def next_counter(folder: str | os.PathLike) -> int:
    """A1111's ``get_next_sequence_number``: one past the largest leading number of any name in the
    folder (``00012-1234.png`` → 12), or 0 for an empty or missing folder."""
    best = -1
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(folder):
            head = os.path.splitext(name)[0].split("-")[0]
            if head.isdigit():
                best = max(best, int(head))
    return best + 1


def save_image(
    image: Image.Image,
    folder: str | os.PathLike,
    infotext: str | None,
    seed: int | None = None,
    *,
    fmt: str = "png",
    extra_text: Mapping[str, str] | None = None,
) -> Path:
    """Save as ``<counter:05>-<seed>.<fmt>`` in ``folder`` (created if needed); never overwrites.

    The file appears complete or not at all: it is written to a hidden temporary file and hard-linked
    to its name, which fails instead of replacing an existing file (another process may be saving into
    the same folder); the counter then moves on.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ext = fmt.lower().lstrip(".")
    data = encode_image(image, infotext, fmt=ext, extra_text=extra_text)
    counter = next_counter(folder)
    suffix = f"-{seed}" if seed is not None else ""
    for _ in range(100_000):
        target = folder / f"{counter:05}{suffix}.{ext}"
        if not target.exists() and _create_exclusive(target, data):
            return target
        counter += 1
    raise FileExistsError(f"no free file name in {folder} after 100000 tries")


def _create_exclusive(target: Path, data: bytes) -> bool:
    """Create ``target`` holding ``data`` unless it exists; False if it exists."""
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            os.link(tmp, target)
            return True
        except FileExistsError:
            return False
        except OSError:  # no hard links on this file system: exclusive create instead
            try:
                with open(target, "xb") as f:
                    f.write(data)
                return True
            except FileExistsError:
                return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


# ---------------------------------------------------------------- reading


def infotext_from_image(image: Image.Image) -> str | None:
    """The infotext of an opened image (A1111's ``read_info_from_image``): the PNG ``parameters``
    text, overridden by a non-empty EXIF UserComment (JPEG/WebP, or PNG with EXIF); a GIF comment."""
    info = image.info or {}
    text = info.get(PNG_KEY)
    if "exif" in info:
        comment = _user_comment(image)
        if comment:
            text = comment
    elif "comment" in info:
        comment = info["comment"]
        text = comment.decode("utf8", errors="ignore") if isinstance(comment, bytes) else comment
    return text if text is None else str(text)


def _user_comment(image: Image.Image) -> str:
    try:
        raw = image.getexif().get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    except Exception:  # malformed EXIF: no comment
        return ""
    if raw is None:
        return ""
    if isinstance(raw, str):
        return raw
    prefix, body = raw[:8], raw[8:]
    if prefix == _UNICODE:
        if body[:2] == b"\xff\xfe":  # a little-endian writer with a byte-order mark
            return body[2:].decode("utf-16-le", errors="ignore")
        return body.removeprefix(b"\xfe\xff").decode("utf-16-be", errors="ignore")
    if prefix == _ASCII:
        return body.decode("ascii", errors="ignore")
    return raw.decode("utf8", errors="ignore").strip("\x00")


def read_infotext(source: str | os.PathLike | BinaryIO) -> str | None:
    """The infotext stored in an image file, or None if it has none.

    Raises FileNotFoundError, or ValueError with a one-line reason for a file Pillow cannot read."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with PILImage.open(source) as image:
            try:
                image.load()  # text chunks after the image data are read here
            except OSError:  # truncated pixel data: keep the text read before it, if any
                if infotext_from_image(image) is None:
                    raise
            return infotext_from_image(image)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except UnidentifiedImageError:
        raise ValueError("not a PNG, JPEG or WebP image (Pillow cannot identify it)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"damaged image file ({e})") from None


# ---------------------------------------------------------------- model hashes


def sha256_file(path: str | os.PathLike, cache: str | os.PathLike | None = None) -> str:
    """Hex sha256 of a file's bytes. With ``cache`` (a JSON file path), a result is reused while the
    file's resolved path, size and mtime are unchanged, and new results are added to it."""
    path = Path(path).resolve()
    stat = path.stat()
    key = str(path)
    entries = _load_cache(cache) if cache is not None else {}
    entry = entries.get(key)
    if (
        isinstance(entry, dict)
        and entry.get("size") == stat.st_size
        and entry.get("mtime_ns") == stat.st_mtime_ns
    ):
        digest = entry.get("sha256")
        if isinstance(digest, str) and len(digest) == 64:
            return digest
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    if cache is not None:
        entries = _load_cache(cache)  # re-read: another process may have added entries meanwhile
        entries[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
        _store_cache(cache, entries)
    return digest


def model_hash(path: str | os.PathLike, cache: str | os.PathLike | None = None) -> str:
    """A1111's ``Model hash`` (new style): the first 10 hex digits of the file's sha256."""
    return sha256_file(path, cache)[:10]


def legacy_model_hash(path: str | os.PathLike) -> str:
    """A1111's old 8-hex ``Model hash`` (before 1.0): sha256 of the 64 KiB at offset 1 MiB."""
    with open(path, "rb") as f:
        f.seek(0x100000)
        return hashlib.sha256(f.read(0x10000)).hexdigest()[:8]


def _load_cache(cache: str | os.PathLike) -> dict:
    try:
        data = json.loads(Path(cache).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    entries = data.get("sha256") if isinstance(data, dict) else None
    return entries if isinstance(entries, dict) else {}


def _store_cache(cache: str | os.PathLike, entries: dict) -> None:
    cache = Path(cache)
    cache.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=cache.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"version": 1, "sha256": entries}, f, indent=1, sort_keys=True)
        os.replace(tmp, cache)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


# ---------------------------------------------------------------- CLI: glassforge png-info


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "png-info",
        help="print the generation parameters (A1111 infotext) stored in a PNG, JPEG or WebP",
        description="Print the A1111 infotext stored in an image; with --json, the parsed parameters.",
    )
    p.add_argument("file", metavar="FILE", help="image written by glassforge, A1111, Forge, ...")
    p.add_argument(
        "--json",
        action="store_true",
        help='print {"info": text, "parameters": glassforge fields, "a1111": A1111\'s parsed dict}',
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    def fail(reason: str) -> int:
        print(f"glassforge png-info: {args.file}: {reason}", file=sys.stderr)
        return 2

    try:
        text = read_infotext(args.file)
    except FileNotFoundError:
        return fail("no such file")
    except IsADirectoryError:
        return fail("is a directory, expected an image file")
    except PermissionError:
        return fail("permission denied")
    except ValueError as e:
        return fail(str(e))
    if text is None:
        return fail("has no generation parameters (no 'parameters' text chunk or EXIF UserComment)")
    if not args.json:
        print(text)
        return 0
    try:
        params = GenerationParams.from_infotext(text)
    except ValueError as e:
        return fail(str(e))
    out = {"info": text, "parameters": params.to_dict(), "a1111": parse_generation_parameters(text)}
    print(json.dumps(out, ensure_ascii=False, indent=2))
    return 0
