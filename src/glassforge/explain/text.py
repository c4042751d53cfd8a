"""``--format text``: the walk-through printed in the terminal, step by step, numbers and formulas."""

from __future__ import annotations

import math
import textwrap

from . import attention, facts
from .i18n import strings
from .trace import Trace
from .walk import fmt, par, step_walk


def _wrap(text: str, lang: str) -> str:
    """English is wrapped at 100 columns; Japanese is left to the terminal (it has no spaces to break at)."""
    if lang == "ja":
        return text
    return textwrap.fill(text, 100, break_on_hyphens=False)


def _head(title: str) -> str:
    return f"\n{'=' * 4} {title} {'=' * max(4, 60 - len(title))}"


def _tokens(trace: Trace, s: dict[str, str]) -> list[str]:
    out = []
    for k, enc in enumerate(trace.prompt["cond"]["encoders"]):
        out.append(
            s["a_count"].format(count=enc["token_count"], counter=enc["counter"], chunks=len(enc["chunks"]))
        )
        rows = facts.token_rows(trace.prompt["cond"], k)
        shown = facts.shown_rows(rows, padding_kept=1)
        out.append(
            f"  {s['col_chunk']:>6} {s['col_pos']:>6} {s['col_id']:>6} {s['col_weight']:>7}  {s['col_token']}"
        )
        for r in shown:
            out.append(
                f"  {r.chunk:>6} {r.position:>6} {r.id:>6} {fmt(r.weight):>7}  {r.text}  ({s['kind_' + r.kind]})"
            )
        pads = sum(1 for r in rows if r.kind == "padding") - sum(1 for r in shown if r.kind == "padding")
        if pads > 0:
            out.append(
                "  " + s["a_padding"].format(n=pads, id=next(r.id for r in rows if r.kind == "padding"))
            )
    return out


def _attention(trace: Trace, i: int, s: dict[str, str]) -> list[str]:
    """Step ``i``: per word its share of the attention, the 3×3 region where it is strongest, the peak cell."""
    maps = trace.attention_maps(i)
    if maps is None:
        return []
    out = ["  " + s["att_text"]]
    for r in attention.words(trace):
        w = attention.where(maps[0, r["row"]])
        name = attention.label(r)
        out.append(f"    {name:<14} {100 * w['share']:5.1f}%  {s['region_' + w['region']]:<13} {w['peak']}")
    return out


def walkthrough(trace: Trace, lang: str = "en") -> str:
    """The whole walk-through as text (sections a–h)."""
    s = strings(lang)
    batch = trace.batch(0)
    out = [s["title"], "-" * 40, f"{s['prompt']}: {trace.prompt['cond']['text']}",
           f"{s['negative']}: {trace.prompt['uncond']['text'] or s['none']}"]  # fmt: skip

    out.append(_head(s["a_title"]))
    out.append(_wrap(s["a_what"].format(vocab="49,408"), lang))
    out += _tokens(trace, s)

    e = facts.embedding(trace)
    out.append(_head(s["b_title"]))
    out.append(_wrap(s["b_what"].format(dim=e["dim"], rows=e["tokens"]), lang))
    out.append(s["b_norms"])
    for r in facts.shown_rows(e["rows"], padding_kept=1):
        v = e["matrix"][r.position]
        head = ", ".join(fmt(float(x)) for x in v[:4])
        out.append(f"  {r.text:<20} ‖v‖ = {fmt(e['norms'][r.position]):<9}  v = [{head}, …]")

    nz = facts.noise(trace)
    out.append(_head(s["c_title"]))
    out.append(_wrap(s["c_what"].format(seed=nz["seed"], count=f"{nz['eps'].numel():,}",
                                        shape=" × ".join(map(str, nz["shape"])), sigma0=fmt(nz["sigma0"])), lang))  # fmt: skip
    out.append(
        s["c_hist"].format(mean=fmt(nz["mean"]), std=fmt(nz["std"]), min=fmt(nz["min"]), max=fmt(nz["max"]))
    )
    for el, v, xt in nz["elements"]:
        out.append(
            f"  ε[{', '.join(map(str, el))}] = {fmt(v)}  →  x_T = σ_max·ε = {fmt(nz['sigma0'])} × {par(v)} = {fmt(xt)}"
        )

    name, formula = facts.schedule_formula(trace)
    rows = facts.schedule_rows(trace)
    out.append(_head(s["d_title"]))
    out.append(_wrap(s["d_what"].format(steps=len(rows) - 1, schedule=name,
                                        rule=trace.model.get("timestep_rule", "interp")), lang))  # fmt: skip
    out.append(f"{s['d_formula']} {formula}")
    out.append(f"  {'i':>3} {'σ_i':>11} {'t_i':>9} {'ᾱ':>10} {'√ᾱ':>9} {'√(1−ᾱ)':>9}")
    for r in rows:
        t = "—" if math.isnan(r["t"]) else fmt(r["t"])
        out.append(
            f"  {r['i']:>3} {fmt(r['sigma']):>11} {t:>9} {fmt(r['abar']):>10} {fmt(r['signal']):>9} {fmt(r['noise']):>9}"
        )

    out.append(_head(s["e_title"]))
    cfg = trace.doc.get("params", {}).get("cfg_scale", "")
    out.append(_wrap(s["e_what"].format(cfg=cfg, sampler=batch["sampler"], steps=len(batch["steps"])), lang))
    for i in range(len(batch["steps"])):
        w = step_walk(trace, i)
        out.append(f"\n-- {s['e_step']} {i + 1}/{w.total}:  σ_i = {fmt(w.sigma)} → σ_{{i+1}} = {fmt(w.sigma_next)},  "
                   f"t = {fmt(w.timestep)}  ({w.sampler})")  # fmt: skip
        out += ["  " + line for line in w.filled]
        for el, lines in w.elements:
            out.append(f"  x[{', '.join(map(str, el))}]:")
            out += ["    " + line for line in lines]
        if w.check is not None:
            out.append("  " + s["e_check"].format(check=f"{w.check:.3g}"))
        out.append("  " + ", ".join(f"{s.get('stat_' + k, k)} = {fmt(v)}" for k, v in w.stats.items()))
        out += _attention(trace, i, s)
    if not trace.attention:
        out.append(s["e_attention_none"])

    ps = facts.pseudo_space(trace)
    out.append(_head(s["f_title"]))
    out.append(
        _wrap(s["f_what"].format(dims=f"{ps['dims']:,}", share=f"{100 * sum(ps['share']):.1f}%"), lang)
    )
    for k, ((a, b), (c, d)) in enumerate(zip(ps["x"], [*ps["x0"], [math.nan, math.nan]], strict=False)):
        out.append(
            f"  {k:>3}  x: ({fmt(a)}, {fmt(b)})" + ("" if math.isnan(c) else f"   x0: ({fmt(c)}, {fmt(d)})")
        )

    d = facts.decode(trace)
    out.append(_head(s["g_title"]))
    out.append(_wrap(s["g_what"].format(
        latent=" × ".join(map(str, d["latent_shape"])), scale=fmt(d["scale_factor"]),
        factor=d["pixel_shape"][-1] // d["latent_shape"][-1], pixels=f"{math.prod(d['pixel_shape']):,}",
        min=fmt(d["min"]), max=fmt(d["max"]), clamped=f"{100 * d['clamped_share']:.1f}%"), lang))  # fmt: skip
    out.append(s["g_pixel"].format(y=d["pixel"][0], x=d["pixel"][1]))
    for name, v, h, c, byte in zip("RGB", d["rgb"], d["halves"], d["clamped"], d["bytes"], strict=True):
        out.append(
            f"  {name}: v = {fmt(v)} → (v + 1)/2 = {fmt(h)} → clamp = {fmt(c)} → ×255 = {fmt(255 * c)} → {byte}"
        )

    out.append(_head(s["h_title"]))
    for key in ("h_forward", "h_loss", "h_sigma"):
        out.append(_wrap(s[key].format(), lang))
    out.append(_wrap(s["h_reverse"].format(sampler=batch["sampler"]), lang))
    ddpm = facts.ddpm_rows(trace)
    if ddpm:
        r = ddpm[0]
        out.append(_wrap(s["h_first"].format(t=fmt(r["t"]), k=r["k"], beta=fmt(r["beta"]), abar=fmt(r["abar"]),
                                             sigma=fmt(r["sigma"]), sa=fmt(math.sqrt(r["abar"])),
                                             sn=fmt(math.sqrt(1 - r["abar"]))), lang))  # fmt: skip
        out.append(s["h_table"])
        out.append(f"  {'i':>3} {'t':>9} {'k':>4} {'β_k':>10} {'α_k':>10} {'ᾱ_k':>10} {'σ_k':>10}")
        for r in ddpm:
            out.append(f"  {r['i']:>3} {fmt(r['t']):>9} {r['k']:>4} {fmt(r['beta']):>10} {fmt(r['alpha']):>10} "
                       f"{fmt(r['abar']):>10} {fmt(r['sigma']):>10}")  # fmt: skip
    out.append("\n" + s["files"])
    return "\n".join(out) + "\n"
