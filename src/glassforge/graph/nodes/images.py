"""Latents and pixels: empty latents, resizing, the VAE both ways, loading and saving images
(the seeds' LatentVector → PixelConversion → Image)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..registry import NodeRegistry, NodeResult
from ..schema import Input, NodeSchema, Output
from ..values import ImageValue, Latent, MaskValue

MAX_RESOLUTION = 16384
LATENT_METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "bislerp")
IMAGE_METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "lanczos")


def _resize(x: torch.Tensor, width: int, height: int, method: str, crop: str) -> torch.Tensor:
    """[B, C, H, W] resized to height × width; ``crop`` "center" first crops to the target's aspect ratio."""
    import torch.nn.functional as F

    if crop == "center":
        h, w = x.shape[-2:]
        target, old = width / height, w / h
        if old > target:
            keep = round(h * target)
            x = x[..., (w - keep) // 2 : (w - keep) // 2 + keep]
        elif old < target:
            keep = round(w / target)
            x = x[..., (h - keep) // 2 : (h - keep) // 2 + keep, :]
    if method == "lanczos":
        import numpy as np
        from PIL import Image

        out = []
        for img in x:
            arr = (img.permute(1, 2, 0).clamp(0, 1) * 255).round().byte().cpu().numpy()
            resized = Image.fromarray(arr).resize((width, height), Image.Resampling.LANCZOS)
            out.append(torch.from_numpy(np.array(resized)).permute(2, 0, 1).float() / 255)
        return torch.stack(out)
    mode = {"nearest-exact": "nearest-exact", "bislerp": "bilinear"}.get(method, method)
    kwargs = {"antialias": True} if mode in ("bilinear", "bicubic") else {}
    align = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    return F.interpolate(x, size=(height, width), mode=mode, **kwargs, **align)


def _target_size(width: int, height: int, h: int, w: int) -> tuple[int, int]:
    """ComfyUI's rule: a 0 side follows the other one, keeping the aspect ratio of an h × w input."""
    return width or round(w * height / h), height or round(h * width / w)


def to_images(pixels: torch.Tensor):
    """IMAGE [B, H, W, 3] in [0, 1] → PIL images, truncated to 8 bits (ComfyUI's and A1111's rule)."""
    import numpy as np
    from PIL import Image

    arrays = (255.0 * pixels.float().cpu().numpy()).clip(0, 255).astype(np.uint8)
    return [Image.fromarray(a) for a in arrays]


def infotext_of(params: dict, index: int) -> str | None:
    """A1111's infotext for image ``index`` of a batch made with ``params`` (a sampler's provenance)."""
    if not params:
        return None
    from ...infotext import GenerationParams

    seeds = params.get("seeds") or [0]
    return GenerationParams(
        prompt=params["prompt"], negative_prompt=params["negative_prompt"], steps=params["steps"],
        sampler=params["sampler"], schedule=params["schedule"], cfg_scale=params["cfg_scale"],
        seed=seeds[min(index, len(seeds) - 1)], width=params["width"], height=params["height"],
        model_hash=params.get("model_hash"), model=params.get("model"),
        variation_seed=params["variation_seed"] + index if params.get("variation_seed_strength") else None,
        variation_seed_strength=params.get("variation_seed_strength", 0.0), clip_skip=params.get("clip_skip", 1),
        ensd=params.get("ensd", 0), denoising_strength=params.get("denoising_strength"),
        extra=dict(params.get("extra") or {}),
    ).to_infotext()  # fmt: skip


def _next_comfy_name(folder: Path, prefix: str) -> tuple[Path, str]:
    """ComfyUI's ``{prefix}_{counter:05}_.png``, the counter one past the highest with that prefix."""
    sub, _, base = prefix.rpartition("/")
    target = (folder / sub).resolve()
    if folder.resolve() not in (target, *target.parents):
        raise ValueError(f"filename_prefix {prefix!r} leaves the output folder")
    target.mkdir(parents=True, exist_ok=True)
    counters = []
    for p in target.glob(f"{base}_*_.png"):
        middle = p.name[len(base) + 1 : -5]
        if middle.isdigit():
            counters.append(int(middle))
    return target / f"{base}_{max(counters, default=0) + 1:05}_.png", sub


def save_images(
    ctx, images: ImageValue, prefix: str, folder: Path, kind: str, naming: str = "comfyui"
) -> dict:
    from ...pngfile import _create_exclusive, encode_image, save_image

    extra = {"prompt": json.dumps(ctx.prompt)}
    for key, value in (ctx.extra_data.get("extra_pnginfo") or {}).items():
        extra[key] = json.dumps(value)
    saved = []
    for i, image in enumerate(to_images(images.pixels)):
        infotext = infotext_of(images.params, i)
        if naming == "a1111":
            seeds = images.params.get("seeds") or [None]
            path = save_image(image, folder, infotext, seed=seeds[min(i, len(seeds) - 1)], extra_text=extra)
            sub = ""
        else:
            data = encode_image(image, infotext, extra_text=extra)
            while True:
                path, sub = _next_comfy_name(folder, prefix)
                if _create_exclusive(path, data):
                    break
        saved.append({"filename": path.name, "subfolder": sub, "type": kind, "path": str(path)})
    return {"images": saved}


def register(reg: NodeRegistry) -> None:
    @reg.node(NodeSchema("EmptyLatentImage", "Empty Latent Image", "latent",
                         "A batch of all-zero latents of the given pixel size (1/8 per side for SD).",
                         (Input("width", "INT", default=512, min=16, max=MAX_RESOLUTION, step=8),
                          Input("height", "INT", default=512, min=16, max=MAX_RESOLUTION, step=8),
                          Input("batch_size", "INT", default=1, min=1, max=4096)),
                         (Output("LATENT"),),
                         role="LatentVector: the empty canvas in latent space that noise will fill."),
             check=lambda env, width, height, batch_size: None if width % 8 == 0 and height % 8 == 0
             else f"width {width} and height {height} must be multiples of 8")  # fmt: skip
    def empty_latent(ctx, width, height, batch_size):
        # 4 channels at 1/8 as in ComfyUI; a sampler re-makes it for a model whose VAE differs
        return (Latent(torch.zeros(batch_size, 4, height // 8, width // 8), empty=True),)

    @reg.node(NodeSchema("LatentUpscale", "Upscale Latent", "latent", "Resizes latents (pixel size / 8).",
                         (Input("samples", "LATENT"),
                          Input("upscale_method", "COMBO", default="nearest-exact", choices=LATENT_METHODS),
                          Input("width", "INT", default=512, min=0, max=MAX_RESOLUTION, step=8),
                          Input("height", "INT", default=512, min=0, max=MAX_RESOLUTION, step=8),
                          Input("crop", "COMBO", default="disabled", choices=("disabled", "center"))),
                         (Output("LATENT"),), role="Changes the LatentVector's size (hires fix)."))  # fmt: skip
    def latent_upscale(ctx, samples, upscale_method, width, height, crop):
        if width == 0 and height == 0:
            return (samples,)
        width, height = _target_size(width, height, *samples.samples.shape[-2:])
        d = samples.downscale  # pixels per latent cell of this latent's VAE
        return (
            samples.with_samples(_resize(samples.samples, width // d, height // d, upscale_method, crop)),
        )

    @reg.node(NodeSchema("VAEDecode", "VAE Decode", "latent",
                         "Turns latents into pixels with the VAE decoder: x / scale factor → decoder → clamp.",
                         (Input("samples", "LATENT"), Input("vae", "VAE")), (Output("IMAGE"),),
                         role="PixelConversion: LatentVector → Image."))  # fmt: skip
    def vae_decode(ctx, samples, vae):
        from ...models.vae import decode

        m = vae.model
        pixels = decode(m.vae, samples.samples, m.vae_scale_factor)
        images = torch.clamp((pixels.float() + 1.0) / 2.0, 0.0, 1.0).permute(0, 2, 3, 1).cpu()
        return (ImageValue(images, samples.params),)

    @reg.node(NodeSchema("VAEEncode", "VAE Encode", "latent",
                         "Turns pixels into latents with the VAE encoder (the posterior mean × scale factor).",
                         (Input("pixels", "IMAGE"), Input("vae", "VAE")), (Output("LATENT"),),
                         role="PixelConversion backwards: Image → LatentVector (for img2img)."))  # fmt: skip
    def vae_encode(ctx, pixels, vae):
        from ...models.vae import encode

        m = vae.model
        factor = m.vae_downscale
        x = pixels.pixels.permute(0, 3, 1, 2)
        h, w = (x.shape[-2] // factor) * factor, (x.shape[-1] // factor) * factor
        x = x[..., :h, :w] * 2 - 1
        latents = encode(m.vae, x.to(next(m.vae.parameters()).device), m.vae_scale_factor)
        return (Latent(latents, downscale=factor),)

    @reg.node(NodeSchema("ImageScale", "Upscale Image", "image/upscaling", "Resizes images.",
                         (Input("image", "IMAGE"),
                          Input("upscale_method", "COMBO", default="nearest-exact", choices=IMAGE_METHODS),
                          Input("width", "INT", default=512, min=0, max=MAX_RESOLUTION, step=1),
                          Input("height", "INT", default=512, min=0, max=MAX_RESOLUTION, step=1),
                          Input("crop", "COMBO", default="disabled", choices=("disabled", "center"))),
                         (Output("IMAGE"),), role="Changes the Image's size."))  # fmt: skip
    def image_scale(ctx, image, upscale_method, width, height, crop):
        if width == 0 and height == 0:
            return (image,)
        width, height = _target_size(width, height, *image.pixels.shape[1:3])
        x = _resize(image.pixels.permute(0, 3, 1, 2), width, height, upscale_method, crop)
        return (ImageValue(x.clamp(0, 1).permute(0, 2, 3, 1), image.params, image.seeds),)

    @reg.node(NodeSchema("LoadImage", "Load Image", "image", "Loads an image from the input folder (and its "
                         "alpha as a mask, 1 where transparent).",
                         (Input("image", "COMBO", choices=lambda env: env.input_images() if env else [],
                                extra={"image_upload": True}),),
                         (Output("IMAGE"), Output("MASK")), role="Brings an Image in from a file."))  # fmt: skip
    def load_image(ctx, image):
        import numpy as np
        from PIL import Image, ImageOps

        path = (ctx.env.input_dir / image).resolve()
        if ctx.env.input_dir.resolve() not in path.parents:
            raise ValueError(f"image {image!r} is outside the input folder")
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            rgb = torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0)[None]
            if "A" in img.getbands():
                alpha = np.asarray(img.getchannel("A"), dtype=np.float32) / 255.0
                mask = 1.0 - torch.from_numpy(alpha)[None]
            else:
                mask = torch.zeros(1, 64, 64)
        return (ImageValue(rgb), MaskValue(mask))

    @reg.node(NodeSchema("SaveImage", "Save Image", "image",
                         "Saves images as PNG in the output folder with the workflow (ComfyUI's 'prompt' and "
                         "'workflow' chunks) and A1111's 'parameters' infotext.",
                         (Input("images", "IMAGE"),
                          Input("filename_prefix", "STRING", default="ComfyUI"),
                          Input("filename_format", "COMBO", "ComfyUI's prefix_00001_.png or A1111's "
                                "00001-seed.png", default="comfyui", choices=("comfyui", "a1111"), optional=True)),
                         (), output_node=True, hidden={"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
                         role="Keeps the Image, and how it was made.", not_idempotent=False))  # fmt: skip
    def save_image_node(ctx, images, filename_prefix, filename_format="comfyui"):
        ui = save_images(ctx, images, filename_prefix, ctx.env.output_dir, "output", filename_format)
        return NodeResult((), ui)

    @reg.node(NodeSchema("PreviewImage", "Preview Image", "image", "Shows images (saved to the temp folder).",
                         (Input("images", "IMAGE"),), (), output_node=True,
                         hidden={"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
                         role="Shows the Image without keeping it."))  # fmt: skip
    def preview_image(ctx, images):
        return NodeResult((), save_images(ctx, images, "preview", ctx.env.temp_dir, "temp"))
