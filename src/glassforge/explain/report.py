"""The self-contained ``index.html``: the pipeline walked through in pictures and numbers.

Works from ``file://`` with no network: the style and the script are inline, pictures are PNG data
URIs, charts are inline SVG drawn here. Sections follow the pipeline: a tokens, b text vectors,
c noise, d schedule, e steps (slider), f pseudo-space, g decode, h the math.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from . import attention, facts, svg
from .i18n import strings
from .pictures import Previewer, channel_images, diverging, png_uri, robust_scale, side_by_side
from .report_assets import CSS, JS
from .trace import Trace
from .walk import fmt, par, step_walk

esc = svg.esc


@dataclass
class Pictures:
    """Per step: the data the slider shows; plus the GIF frames."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    frames: list[Image.Image] = field(default_factory=list)


def _table(headers: list[str], rows: list[list[Any]], classes: list[str] | None = None, left: int = 0) -> str:
    head = "".join(
        f'<th class="l">{esc(h)}</th>' if k < left else f"<th>{esc(h)}</th>" for k, h in enumerate(headers)
    )
    body = []
    for r, row in enumerate(rows):
        cls = f' class="{classes[r]}"' if classes and classes[r] else ""
        cells = "".join(
            f'<td class="l">{esc(v)}</td>' if k < left else f"<td>{esc(v)}</td>" for k, v in enumerate(row)
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def short_token(r: facts.TokenRow) -> str:
    """A token for chart labels: BOS / EOS / pad, and words without the "</w>" mark."""
    names = {"bos": "BOS", "eos": "EOS", "padding": "pad"}
    return names.get(r.kind) or r.text.replace("</w>", "")


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def step_pictures(trace: Trace, previewer: Previewer, s: dict[str, str], n: int = 0, b: int = 0) -> Pictures:
    """Decode and draw every step once (the slider's data and the GIF's frames)."""
    from ..models.vae import latent_preview

    out = Pictures()
    steps = trace.steps(n)
    family = trace.model.get("family", "sd1")
    todo: list[Any] = []  # latents to picture: per step the guided estimate, then cond and uncond
    for step in steps:
        g = trace.guidance(step, n)
        guided = (trace.t(g[0]["tensors"]["guided"]) if g else trace.step_tensor(step, "denoised"))[b]
        todo.append(guided)
        if g and g[0]["tensors"]["uncond"] is not None:
            todo += [trace.t(g[0]["tensors"]["cond"])[b], trace.t(g[0]["tensors"]["uncond"])[b]]
    import torch

    pictures = iter(previewer.many(torch.stack(todo).float()))
    for i, step in enumerate(steps):
        walk = step_walk(trace, i, b=b, n=n)
        sigma = float(step["sigma"])
        x = trace.step_tensor(step, "x")[b].float()
        seen = x / math.sqrt(1 + sigma * sigma)
        g = trace.guidance(step, n)
        guided = (trace.t(g[0]["tensors"]["guided"]) if g else trace.step_tensor(step, "denoised"))[b].float()
        eps = (x - guided) / sigma if sigma > 0 else guided * 0
        x0 = next(pictures)
        cond = uncond = None
        if g and g[0]["tensors"]["uncond"] is not None:
            cond, uncond = png_uri(next(pictures)), png_uri(next(pictures))
        out.steps.append(
            {
                "i": i,
                "sigma": fmt(walk.sigma),
                "sigma_next": fmt(walk.sigma_next),
                "t": fmt(walk.timestep),
                "latent": [png_uri(im) for im in channel_images(seen, 3.0)],
                "eps": [png_uri(im) for im in channel_images(eps, 3.0)],
                "x0": png_uri(x0),
                "cond": cond,
                "uncond": uncond,
                "filled": walk.filled,
                "elements": [{"at": ", ".join(map(str, e)), "lines": lines} for e, lines in walk.elements],
                "check": None if walk.check is None else s["e_check"].format(check=f"{walk.check:.3g}"),
                "stats": [[s.get("stat_" + k, k), fmt(v)] for k, v in walk.stats.items()],
                "att": attention.step_data(trace, i, s, n, b),
            }
        )
        lat = latent_preview(seen[None], family)[0]
        lat_img = Image.fromarray((lat.permute(1, 2, 0).numpy() * 255).astype("uint8"), "RGB")
        out.frames.append(side_by_side(x0, lat_img))
    return out


def _flow(trace: Trace, s: dict[str, str]) -> str:
    p = trace.prompt["cond"]
    emb = trace.t(p["context"])
    batch = trace.batch(0)
    noise = trace.t(batch["noise"])
    pixels = trace.t(batch["decoded"]["pixels"])
    count = sum(e["token_count"] for e in p["encoders"][:1])
    boxes = [
        ("#a", s["flow_tokens"], f"{count} + BOS/EOS → 77·{p['chunks']}"),
        ("#b", s["flow_text"], "×".join(map(str, emb.shape[1:]))),
        ("#c", s["flow_noise"], f"seed {batch['seeds'][0]} → {'×'.join(map(str, noise.shape[1:]))}"),
        ("#d", "σ", f"{fmt(batch['sigmas'][0])} → 0"),
        ("#e", s["flow_steps"], f"{len(batch['steps'])} × {batch['sampler']}"),
        ("#g", s["flow_latent"], "×".join(map(str, noise.shape[1:]))),
        ("#g", s["flow_image"], f"{pixels.shape[-1]}×{pixels.shape[-2]}"),
    ]
    parts = [f'<a href="{h}">{esc(label)}<b>{esc(detail)}</b></a>' for h, label, detail in boxes]
    return '<nav class="flow">' + "<span>→</span>".join(parts) + "</nav>"


def _tokens_table(side: dict[str, Any], encoder: int, s: dict[str, str]) -> str:
    rows = facts.token_rows(side, encoder)
    shown = facts.shown_rows(rows, padding_kept=1)
    body, classes = [], []
    for r in shown:
        body.append([r.chunk, r.position, r.text, r.id, fmt(r.weight), s["kind_" + r.kind]])
        classes.append(r.kind)
    per_chunk = {}
    for r in rows:
        if r.kind == "padding":
            per_chunk[r.chunk] = per_chunk.get(r.chunk, 0) + 1
    html_rows = _table([s["col_chunk"], s["col_pos"], s["col_token"], s["col_id"], s["col_weight"], s["col_kind"]],
                       body, classes, left=0)  # fmt: skip
    for chunk, count in per_chunk.items():
        if count > 1:
            pad_id = next(r.id for r in rows if r.chunk == chunk and r.kind == "padding")
            more = f'<tr class="more"><td colspan="6">{esc(s["a_padding"].format(n=count - 1, id=pad_id))}</td></tr>'
            marker = f"<td>{chunk}</td>"
            # insert after the last shown row of that chunk
            idx = html_rows.rfind(f'<tr class="padding">{marker}')
            end = html_rows.find("</tr>", idx) + len("</tr>")
            html_rows = html_rows[:end] + more + html_rows[end:]
    return f'<div class="scroll">{html_rows}</div>'


def section_a(trace: Trace, s: dict[str, str]) -> str:
    p = trace.prompt
    out = [f'<section id="a"><h2>{esc(s["a_title"])}</h2>',
           f'<p class="what">{esc(s["a_what"].format(vocab="49,408"))}</p>']  # fmt: skip
    names = [e["name"] for e in trace.model.get("text_encoders", [])] or ["text encoder"]
    for k, enc in enumerate(p["cond"]["encoders"]):
        if len(p["cond"]["encoders"]) > 1:
            out.append(f"<h3>{esc(names[k] if k < len(names) else k)}</h3>")
        out.append(
            f"<p>{esc(s['a_count'].format(count=enc['token_count'], counter=enc['counter'], chunks=len(enc['chunks'])))}</p>"
        )
        out.append(_tokens_table(p["cond"], k, s))
    neg = p["uncond"]["encoders"][0]
    out.append(f"<h3>{esc(s['negative'])}: “{esc(p['uncond']['text'])}”</h3>")
    out.append(f"<p>{esc(s['a_negative'].format(count=neg['token_count']))}</p>")
    out.append("<details><summary>ids</summary>" + _tokens_table(p["uncond"], 0, s) + "</details></section>")
    return "".join(out)


def section_b(trace: Trace, s: dict[str, str]) -> str:
    e = facts.embedding(trace)
    rows = facts.shown_rows(e["rows"], padding_kept=2)
    idx = [r.chunk * 77 + r.position for r in rows]
    mat = e["matrix"][idx]
    scale = robust_scale(mat, 0.98)
    heat = png_uri(diverging(mat, scale))
    labels = "".join(f"<li>{esc(short_token(r))}</li>" for r in rows)
    height = 14 * len(rows)
    out = [f'<section id="b"><h2>{esc(s["b_title"])}</h2>',
           f'<p class="what">{esc(s["b_what"].format(dim=e["dim"], rows=e["tokens"]))}</p>']  # fmt: skip
    enc = trace.model.get("text_encoders", [])
    if len(enc) > 1:
        names = ", ".join(f"{x['name']} ({x['dim']})" for x in enc)
        out.append(f"<p>{esc(s['b_encoders'].format(n=len(enc), names=names))}</p>")
    out.append(f"<p>{esc(s['b_heat'].format(dim=e['dim'], scale=fmt(scale)))}</p>")
    out.append(f'<div class="heat"><ol>{labels}</ol><img src="{heat}" alt="embedding heat map" '
               f'style="height:{height}px"></div>')  # fmt: skip
    colors = [
        "#e07b24" if r.kind in ("bos", "eos") else "#2f6fb3" if r.kind == "token" else "#aaa" for r in rows
    ]
    out.append(f"<h3>{esc(s['b_norms'])}</h3>")
    out.append(
        svg.bars([e["norms"][k] for k in idx], [short_token(r) for r in rows], ylabel="‖v‖", colors=colors)
    )
    out.append(f"<h3>{esc(s['b_pca'].format(share=_pct(sum(e['pca_share']))))}</h3>")
    pts = []
    for r, (x, y) in zip(e["rows"], e["pca"], strict=False):
        first_pad = r.kind == "padding" and r.position == next(
            (q.position for q in e["rows"] if q.kind == "padding"), -1)  # fmt: skip
        label = short_token(r) if r.kind != "padding" or first_pad else ""
        color = {"bos": "#e07b24", "eos": "#e07b24", "token": "#2f6fb3"}.get(r.kind, "#aaa")
        pts.append((x, y, label, color))
    out.append(svg.scatter(pts, xlabel="PC 1", ylabel="PC 2") + "</section>")
    return "".join(out)


def section_c(trace: Trace, s: dict[str, str]) -> str:
    nz = facts.noise(trace)
    eps = nz["eps"]
    out = [f'<section id="c"><h2>{esc(s["c_title"])}</h2>',
           f'<p class="what">{esc(s["c_what"].format(seed=nz["seed"], count=f"{eps.numel():,}", shape=" × ".join(map(str, nz["shape"])), sigma0=fmt(nz["sigma0"])))}</p>',
           f"<p>{esc(s['c_channels'].format(c=eps.shape[0]))}</p>", '<div class="pics">']  # fmt: skip
    for c, im in enumerate(channel_images(eps, 3.0)):
        out.append(
            f'<figure><img src="{png_uri(im)}" alt="noise channel {c}"><figcaption>ε c{c}</figcaption></figure>'
        )
    out.append("</div>")
    values = eps.reshape(-1).tolist()
    if len(values) > 50_000:
        values = values[:: len(values) // 50_000 + 1]
    out.append(
        f"<p>{esc(s['c_hist'].format(mean=fmt(nz['mean']), std=fmt(nz['std']), min=fmt(nz['min']), max=fmt(nz['max'])))}</p>"
    )
    out.append(
        svg.histogram(
            values, pdf=lambda v: math.exp(-v * v / 2) / math.sqrt(2 * math.pi), xlabel="ε", ylabel="density"
        )
    )
    out.append(f"<h3>{esc(s['c_elements'])}</h3><pre>")
    for e, v, xt in nz["elements"]:
        out.append(
            esc(
                f"ε[{', '.join(map(str, e))}] = {fmt(v)}   →   x_T = σ_max·ε = {fmt(nz['sigma0'])} × {par(v)} = {fmt(xt)}\n"
            )
        )
    out.append("</pre></section>")
    return "".join(out)


def section_d(trace: Trace, s: dict[str, str]) -> str:
    rows = facts.schedule_rows(trace)
    name, formula = facts.schedule_formula(trace)
    what = s["d_what"].format(
        steps=len(rows) - 1, schedule=name, rule=trace.model.get("timestep_rule", "interp")
    )
    table = _table([s["col_step"], s["col_sigma"], s["col_t"], s["col_abar"], s["col_signal"], s["col_noise"]],
                   [[r["i"], fmt(r["sigma"]), "—" if math.isnan(r["t"]) else fmt(r["t"]), fmt(r["abar"]),
                     fmt(r["signal"]), fmt(r["noise"])] for r in rows])  # fmt: skip
    pos = [r for r in rows if r["sigma"] > 0]
    plots = (svg.lines([r["i"] for r in pos], [("σ", [r["sigma"] for r in pos], "#2f6fb3")], xlabel="i",
                       ylabel=s["d_plot_sigma"], logy=True)
             + svg.lines([r["i"] for r in pos], [("t", [r["t"] for r in pos], "#e07b24")], xlabel="i",
                         ylabel=s["d_plot_t"]))  # fmt: skip
    return (f'<section id="d"><h2>{esc(s["d_title"])}</h2><p class="what">{esc(what)}</p>'
            f'<p>{esc(s["d_formula"])}</p><pre>{esc(formula)}</pre><div class="scroll">{table}</div>'
            f'<div class="pics">{plots}</div></section>')  # fmt: skip


def section_e(trace: Trace, pics: Pictures, s: dict[str, str], preview_mode: str) -> str:
    batch = trace.batch(0)
    cfg = trace.doc.get("params", {}).get(
        "cfg_scale", batch["guidance"][0]["scale"] if batch["guidance"] else 1
    )
    n = len(pics.steps)
    words = {"step": s["e_step"], "play": s["e_play"], "pause": s["e_pause"], "x0": s["e_x0"],
             "cond": s["e_cond"], "uncond": s["e_uncond"], "guided": s["e_guided"]}  # fmt: skip
    note = f'<p class="note">{esc(s["e_preview_rgb"])}</p>' if preview_mode == "rgb" else ""
    return f"""<section id="e"><h2>{esc(s["e_title"])}</h2>
<p class="what">{esc(s["e_what"].format(cfg=fmt(cfg), sampler=batch["sampler"], steps=n))}</p>{note}
<div class="controls"><button id="play" type="button">{esc(s["e_play"])}</button>
<input id="step-slider" type="range" min="0" max="{n - 1}" value="0" step="1" aria-label="{esc(s["e_step"])}">
<span id="step-now" class="now"></span></div>
<h3>{esc(s["e_latent"])}</h3><div id="step-latent" class="pics"></div>
<div class="pics"><div><h3>{esc(s["e_x0"])}</h3><div id="step-x0" class="pics big"></div></div>
<div><h3>{esc(s["e_eps"])}</h3><div id="step-eps" class="pics"></div></div></div>
<h3>CFG: D̃ = D_u + w·(D_c − D_u)</h3><div id="step-cfg" class="pics"></div>
<h3>{esc(s["e_formula"])}</h3><pre id="step-formula"></pre>
<p id="step-check" class="ok"></p>
<h3>{esc(s["e_elements"])}</h3><div id="step-elements"></div>
<h3>{esc(s["e_stats"])}</h3><table><tbody id="step-stats"></tbody></table>
{_attention(trace, s)}
<script type="application/json" id="steps-data">{_json(pics.steps)}</script>
<script type="application/json" id="words-data">{_json(words)}</script>
</section>"""


def _attention(trace: Trace, s: dict[str, str]) -> str:
    """The per-word attention part of section e (filled by the script at each step)."""
    att, shown = trace.attention, attention.words(trace)
    if not att or not shown:
        return f'<p class="attention">{esc(s["e_attention_none"])}</p>'
    h, w = trace.t(att["maps"][0]["tensor"]).shape[-2:]
    what = s["e_attention_what"].format(layers=len(att["layers"]), h=h, w=w)
    data = {"words": [{"label": attention.label(r), "kind": r["kind"]} for r in shown],
            "first": attention.strongest_word(trace)}  # fmt: skip
    return (f'<h3>{esc(s["e_attention"])}</h3><p>{esc(what)}</p><div id="att-words" class="words"></div>'
            '<div class="pics"><figure class="big att"><div class="overlay"><img id="att-base" class="base" alt="">'
            '<img id="att-heat" class="heat" alt=""></div><figcaption id="att-cap"></figcaption></figure></div>'
            '<p id="att-rest" class="note"></p><div id="att-all" class="pics"></div>'
            f'<script type="application/json" id="attention-data">{_json(data)}</script>')  # fmt: skip


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False).replace("</", "<\\/")


def section_f(trace: Trace, s: dict[str, str], gif: str | None) -> str:
    ps = facts.pseudo_space(trace)
    n = len(ps["x"])
    every = max(1, n // 10)
    chart = svg.paths([(s["f_x"], [tuple(p) for p in ps["x"]], "#2f6fb3"),
                       (s["f_x0"], [tuple(p) for p in ps["x0"]], "#e07b24")],
                      xlabel="PC 1", ylabel="PC 2", label_every=every)  # fmt: skip
    what = s["f_what"].format(dims=f"{ps['dims']:,}", share=_pct(sum(ps["share"])))
    out = f'<section id="f"><h2>{esc(s["f_title"])}</h2><p class="what">{esc(what)}</p>{chart}'
    if gif:
        out += f'<figure class="big"><img src="{gif}" alt="denoise.gif" style="width:auto;max-width:100%"><figcaption>{esc(s["f_gif"])}</figcaption></figure>'
    return out + "</section>"


def section_g(trace: Trace, s: dict[str, str]) -> str:
    d = facts.decode(trace)
    factor = d["pixel_shape"][-1] // d["latent_shape"][-1]
    what = s["g_what"].format(latent=" × ".join(map(str, d["latent_shape"])), scale=fmt(d["scale_factor"]),
                              factor=factor, pixels=f"{math.prod(d['pixel_shape']):,}", min=fmt(d["min"]),
                              max=fmt(d["max"]), clamped=_pct(d["clamped_share"]))  # fmt: skip
    scale = robust_scale(d["latent"], 0.99)
    chans = "".join(f'<figure><img src="{png_uri(im)}" alt="latent c{c}"><figcaption>z c{c} (±{fmt(scale)})</figcaption></figure>'
                    for c, im in enumerate(channel_images(d["latent"], scale)))  # fmt: skip
    rows = []
    for name, v, h, c, byte in zip("RGB", d["rgb"], d["halves"], d["clamped"], d["bytes"], strict=True):
        rows.append(
            f"{name}: v = {fmt(v)} → (v + 1)/2 = {fmt(h)} → clamp = {fmt(c)} → ×255 = {fmt(255 * c)} → {byte}"
        )
    final = Image.fromarray(facts.to_uint8(d["pixels"]))
    values = d["pixels"].reshape(-1).tolist()
    if len(values) > 50_000:
        values = values[:: len(values) // 50_000 + 1]
    hist = svg.histogram(values, xlabel="decoder output", ylabel="density", marks=(-1.0, 1.0))
    y, x = d["pixel"]
    return (f'<section id="g"><h2>{esc(s["g_title"])}</h2><p class="what">{esc(what)}</p>'
            f'<div class="pics">{chans}<figure class="big"><img src="{png_uri(final)}" alt="final image">'
            f'<figcaption>{final.width}×{final.height}</figcaption></figure></div>'
            f'<p>{esc(s["g_hist"])}</p>{hist}<p>{esc(s["g_pixel"].format(y=y, x=x))}</p><pre>{esc(chr(10).join(rows))}</pre>'
            "</section>")  # fmt: skip


def section_h(trace: Trace, s: dict[str, str]) -> str:
    rows = facts.ddpm_rows(trace)
    batch = trace.batch(0)
    out = [f'<section id="h"><h2>{esc(s["h_title"])}</h2>']
    for key in ("h_forward", "h_loss", "h_sigma"):
        out.append(f"<p>{esc(s[key].format())}</p>")
    out.append(f"<p>{esc(s['h_reverse'].format(sampler=batch['sampler']))}</p>")
    if rows:
        r = rows[0]
        out.append(
            f'<p class="what">{esc(s["h_first"].format(t=fmt(r["t"]), k=r["k"], beta=fmt(r["beta"]), abar=fmt(r["abar"]), sigma=fmt(r["sigma"]), sa=fmt(math.sqrt(r["abar"])), sn=fmt(math.sqrt(1 - r["abar"]))))}</p>'
        )
        out.append(f"<p>{esc(s['h_table'])}</p>")
        out.append('<div class="scroll">' + _table(
            [s["col_step"], s["col_t"], s["col_k"], s["col_beta"], s["col_alpha"], s["col_abar_k"], s["col_sigma_k"]],
            [[r["i"], fmt(r["t"]), r["k"], fmt(r["beta"]), fmt(r["alpha"]), fmt(r["abar"]), fmt(r["sigma"])] for r in rows],
        ) + "</div>")  # fmt: skip
        ks, abar = facts.ddpm_curve(trace)
        out.append(f"<p>{esc(s['h_curve'])}</p>")
        out.append(svg.lines(ks, [("ᾱ_t", abar, "#2f6fb3")], xlabel="t", ylabel="ᾱ_t", dots=False,
                             points=[(r["k"], r["abar"]) for r in rows]))  # fmt: skip
    out.append(f'<p class="note">{esc(s["files"])}</p></section>')
    return "".join(out)


def render_html(trace: Trace, pics: Pictures, *, lang: str = "en", preview_mode: str = "vae",
                gif: str | None = None) -> str:  # fmt: skip
    s = strings(lang)
    p = trace.prompt
    params = trace.doc.get("params", {})
    final = Image.fromarray(facts.to_uint8(trace.t(trace.batch(0)["decoded"]["pixels"])[0]))
    info = [
        (s["prompt"], p["cond"]["text"] if not params else params.get("prompt", p["cond"]["text"])),
        (s["negative"], params.get("negative_prompt", p["uncond"]["text"]) or s["none"]),
        ("model", trace.model.get("name", "")),
        ("seed", trace.batch(0)["seeds"][0]),
        ("sampler", f"{trace.batch(0)['sampler']} · {trace.batch(0)['schedule']}"),
        ("steps", len(trace.steps())),
        ("CFG", params.get("cfg_scale", "")),
        ("size", f"{final.width}×{final.height}"),
    ]
    table = "".join(f'<tr><th class="l">{esc(k)}</th><td class="l">{esc(v)}</td></tr>' for k, v in info)
    body = [
        f"<h1>{esc(s['title'])}</h1><p class=\"lead\">{esc(s['lead'])}</p>",
        f'<div class="summary"><figure class="big"><img src="{png_uri(final)}" alt="{esc(s["final"])}">'
        f"<figcaption>{esc(s['final'])}</figcaption></figure><table>{table}</table></div>",
        f"<h3>{esc(s['flow'])}</h3>{_flow(trace, s)}",
        section_a(trace, s), section_b(trace, s), section_c(trace, s), section_d(trace, s),
        section_e(trace, pics, s, preview_mode), section_f(trace, s, gif), section_g(trace, s), section_h(trace, s),
    ]  # fmt: skip
    title = f"{s['title']} — {p['cond']['text']}"
    return (f'<!DOCTYPE html>\n<html lang="{lang}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{esc(title)}</title>'
            f"<style>{CSS}</style></head><body><main>{''.join(body)}</main><script>{JS}</script></body></html>\n")  # fmt: skip


def write_report(trace: Trace, model, folder: Path, *, lang: str = "en", preview: str = "auto",
                 html: bool = True) -> dict[str, Path]:  # fmt: skip
    """Write ``denoise.gif`` and (``html``) ``index.html`` into ``folder``; returns their paths."""
    from .pictures import gif_uri, save_gif

    previewer = Previewer(model, preview)
    pics = step_pictures(trace, previewer, strings(lang))
    written = {"gif": save_gif(pics.frames, folder / "denoise.gif")}
    if html:
        page = render_html(trace, pics, lang=lang, preview_mode=previewer.mode, gif=gif_uri(written["gif"]))
        written["html"] = folder / "index.html"
        written["html"].write_text(page, encoding="utf-8")
    return written
