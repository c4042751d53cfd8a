"""``glassforge explain --toy "dog"``: the 2-D toy world explained like an image, step by step.

Runs :func:`~.toy_trace.run_toy` (the real sampler through ``sample()`` on the toy world's exact denoiser)
and writes into the output folder ``trace.json`` and, for ``--format html``, a self-contained
``index.html`` (inline style, script and SVG; two canvases the script redraws for the step the slider
shows; works from ``file://`` with no network). ``--format text`` prints the same walk-through.
Sections: the world (words as clusters), the noise, the σ schedule, the steps (slider), the end, the math.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import torch

from . import svg
from .report_assets import CSS
from .toy_assets import TOY_CSS, TOY_JS
from .toy_i18n import toy_strings
from .toy_trace import ToyTrace, denoiser_lines, run_toy, vec, worked_step, write_toy_trace
from .walk import fmt

esc = svg.esc
COMPRESS = 1.5  # the far view's radial compression r ↦ c·asinh(r/c), as `glassforge toy` draws it
NEAR = 4.3  # half-width of the data-region view
# generate options that have no meaning in the toy world: (attribute, default, flag)
MODEL_ONLY = (("model", None, "--model"), ("vae", None, "--vae"), ("prediction", None, "--prediction"),
              ("width", None, "--width"), ("height", None, "--height"), ("batch_size", 1, "--batch-size"),
              ("batch_count", 1, "--batch-count"), ("clip_skip", 1, "--clip-skip"), ("freeu", None, "--freeu"))  # fmt: skip


def _colour(trace: ToyTrace, word: str) -> str:
    from ..toy.plot import word_colour

    return word_colour(trace.world, word)


def _prompt_words(trace: ToyTrace) -> list[str]:
    return list(trace.cond.words.weights) or list(trace.world.words)


def _share_near(trace: ToyTrace, points) -> float:
    wanted = {trace.world.words.index(w) for w in _prompt_words(trace)}
    nearest = trace.world.nearest_word(points).tolist()
    return sum(1 for k in nearest if k in wanted) / max(len(nearest), 1)


def _labels(trace: ToyTrace) -> list[dict[str, Any]]:
    """One label per word, just outside its clusters."""
    out = []
    for word in trace.world.words:
        means = [c.mean for c in trace.world.clusters if c.word == word]
        cx, cy = sum(m[0] for m in means) / len(means), sum(m[1] for m in means) / len(means)
        r = math.hypot(cx, cy) or 1.0
        f = (r + 0.85) / r
        out.append({"word": word, "at": [cx * f, cy * f], "c": _colour(trace, word)})
    return out


def step_data(trace: ToyTrace, s: dict[str, str]) -> list[dict[str, Any]]:
    """Per step, what the slider shows: the filled-in formula, the followed particle's arithmetic, stats."""
    out = []
    for i, step in enumerate(trace.steps):
        w = worked_step(trace, i)
        guided = step.evaluations[0].guided if step.evaluations else step.denoised
        check = (s["d_not_worked"] if w.check is None
                 else s["d_check"].format(n=trace.particles, check=f"{w.check:.3g}"))  # fmt: skip
        stats = [
            (s["stat_sigma"], fmt(step.sigma)),
            (s["stat_x"], fmt(float(step.x.norm(dim=-1).mean()))),
            (s["stat_d"], fmt(float(guided.norm(dim=-1).mean()))),
            (s["stat_choice"], f"{100 * _share_near(trace, guided):.1f}%"),
            (s["stat_at"], f"{100 * _share_near(trace, step.x):.1f}%"),
        ]
        out.append({"sigma": fmt(step.sigma), "sigma_next": fmt(step.sigma_next), "filled": w.filled,
                    "lines": w.lines, "denoiser": denoiser_lines(trace, i), "check": check,
                    "stats": stats, "numbers": w.numbers, "max_difference": w.check})  # fmt: skip
    return out


def _pts(t) -> list:
    return [[round(float(a), 5), round(float(b), 5)] for a, b in t.tolist()]


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False).replace("</", "<\\/")


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def world_svg(trace: ToyTrace, half: float = 3.9, size: int = 420) -> str:
    """The clusters (1 s and 2 s circles) and the words, in true units."""

    def px(x: float, y: float) -> tuple[float, float]:
        return size / 2 + x / half * size / 2, size / 2 - y / half * size / 2

    listed = set(trace.cond.words.weights)
    body = [f'<rect width="{size}" height="{size}" fill="#fff" stroke="#ccc"/>']
    for t in range(-3, 4):
        a, _ = px(t, 0)
        _, b = px(0, t)
        colour = "#cfd4dc" if t == 0 else "#f0f2f5"
        body.append(f'<line x1="{a:.1f}" y1="0" x2="{a:.1f}" y2="{size}" stroke="{colour}"/>')
        body.append(f'<line x1="0" y1="{b:.1f}" x2="{size}" y2="{b:.1f}" stroke="{colour}"/>')
    for c in trace.world.clusters:
        colour, on = _colour(trace, c.word), c.word in listed or not listed
        x, y = px(*c.mean)
        for k, alpha in ((2, 0.10), (1, 0.22)):
            r = k * c.std / half * size / 2
            body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" fill="{colour}" '
                        f'fill-opacity="{alpha * (1.6 if on else 0.5):.2f}" stroke="{colour}" '
                        f'stroke-opacity="{0.9 if on else 0.4}"/>')  # fmt: skip
    for label in _labels(trace):
        x, y = px(*label["at"])
        body.append(f'<text x="{x:.1f}" y="{y + 4:.1f}" text-anchor="middle" fill="{label["c"]}" '
                    f'font-size="13">{esc(label["word"])}</text>')  # fmt: skip
    return (f'<svg viewBox="0 0 {size} {size}" class="chart" font-family="sans-serif" role="img">'
            f"{''.join(body)}</svg>")  # fmt: skip


def _cluster_rows(trace: ToyTrace) -> list[list[Any]]:
    prior = trace.world.prior_weights()
    return [[c.word, c.label, f"[{fmt(c.mean[0])}, {fmt(c.mean[1])}]", fmt(c.std), fmt(float(prior[k])),
             fmt(float(trace.cond.weights[k])), fmt(float(trace.uncond.weights[k]))]
            for k, c in enumerate(trace.world.clusters)]  # fmt: skip


def _words_text(trace: ToyTrace, s: dict[str, str]) -> list[str]:
    words = trace.cond.words
    if not words.weights:
        return [s["a_empty"]]
    out = [s["a_words"].format(words=", ".join(f"{w} ×{fmt(v)}" for w, v in words.weights.items()))]
    if words.ignored:
        out.append(s["a_ignored"].format(ignored=" ".join(words.ignored)))
    return out


def _noise_lines(trace: ToyTrace) -> list[str]:
    p, s0 = trace.followed, trace.sigmas[0]
    z, x = trace.noise[p], trace.xs[0][p]
    return [f"ε = {vec(z)}", f"x_T = σ_max·ε = {fmt(s0)} × {vec(z)} = {vec(x)}"]


def _schedule_rows(trace: ToyTrace) -> list[list[Any]]:
    return [[i, fmt(v), fmt(1 / (1 + v * v))] for i, v in enumerate(trace.sigmas)]


def _end(trace: ToyTrace) -> tuple[dict[str, float], float]:
    fractions = trace.end_fractions()
    dist = float(torch.cdist(trace.final, trace.world.means).min(-1).values.mean())
    return fractions, dist


def _sampler_info(trace: ToyTrace):
    from ..sampling import SAMPLERS

    return SAMPLERS[trace.sampler]


def render_toy_html(trace: ToyTrace, lang: str = "en") -> str:
    s = toy_strings(lang)
    steps = step_data(trace, s)
    xs, n = trace.xs, len(trace.steps)
    ds = [(st.evaluations[0].guided if st.evaluations else st.denoised) for st in trace.steps]
    far = max(5.0, float(xs.norm(dim=-1).max()))
    data = {"compress": COMPRESS, "near": NEAR, "far": far, "followed": trace.followed,
            "rings": [r for r in (1, 2.5, 5, 10, 20, 40, 80) if r <= far],
            "clusters": [{"m": list(c.mean), "s": c.std, "c": _colour(trace, c.word),
                          "on": not trace.cond.words.weights or c.word in trace.cond.words.weights}
                         for c in trace.world.clusters],
            "labels": _labels(trace), "xs": [_pts(x) for x in xs], "ds": [_pts(d) for d in ds],
            "steps": [{k: v for k, v in st.items() if k not in ("numbers", "max_difference")} for st in steps]}  # fmt: skip
    words = {"step": s["step"], "play": s["play"], "pause": s["pause"]}
    info = _sampler_info(trace)
    summary = [(s["prompt"], trace.prompt or s["none"]), (s["negative"], trace.negative or s["none"]),
               (s["sampler"], f"{trace.sampler} · {trace.schedule_used}"), (s["steps"], n), ("CFG", fmt(trace.cfg)),
               ("seed", trace.seed), (s["particles"], trace.particles), (s["followed"], trace.followed)]  # fmt: skip
    table = "".join(f'<tr><th class="l">{esc(k)}</th><td class="l">{esc(v)}</td></tr>' for k, v in summary)
    fractions, dist = _end(trace)
    listed = _prompt_words(trace)
    legend = "".join(f'<span><i style="background:{c}"></i>{esc(s[k])}</span>'
                     for c, k in (("#2f6fb3", "d_legend_x"), ("#e07b24", "d_legend_d"), ("#c0392b", "d_legend_f")))  # fmt: skip
    step_sigmas = [st.sigma for st in trace.steps]
    sigma_plot = svg.lines(
        list(range(n)), [("σ", step_sigmas, "#2f6fb3")], xlabel="i", ylabel=s["c_plot"], logy=True
    )
    bars = svg.bars([fractions[w] for w in trace.world.words], list(trace.world.words), ylabel=s["e_share"],
                    colors=[_colour(trace, w) for w in trace.world.words])  # fmt: skip
    body = f"""<h1>{esc(s["title"])}</h1><p class="lead">{esc(s["lead"])}</p>
<div class="summary"><div class="world">{world_svg(trace)}</div><table>{table}</table></div>
<section id="a"><h2>{esc(s["a_title"])}</h2>
<p class="what">{esc(s["a_what"].format(words=len(trace.world.words), leak=fmt(trace.world.leak)))}</p>
{"".join(f"<p>{esc(t)}</p>" for t in _words_text(trace, s))}
<div class="scroll">{_table([s["col_word"], s["col_cluster"], s["col_mean"], s["col_std"], s["col_prior"],
                             s["col_prompt"], s["col_negative"]], _cluster_rows(trace))}</div></section>
<section id="b"><h2>{esc(s["b_title"])}</h2>
<p class="what">{esc(s["b_what"].format(seed=trace.seed, count=2 * trace.particles, sigma0=fmt(trace.sigmas[0])))}</p>
<p>{esc(s["b_followed"].format(p=trace.followed))}</p><pre>{esc(chr(10).join(_noise_lines(trace)))}</pre></section>
<section id="c"><h2>{esc(s["c_title"])}</h2>
<p class="what">{esc(s["c_what"].format(steps=n, schedule=trace.schedule_used))}</p>
<p>{esc(s["c_formula"])}</p><pre>{esc(trace.schedule_formula)}</pre>
<div class="pics"><div class="scroll">{_table([s["col_step"], s["col_sigma"], s["col_abar"]], _schedule_rows(trace))}</div>
{sigma_plot}</div></section>
<section id="d"><h2>{esc(s["d_title"])}</h2>
<p class="what">{esc(s["d_what"].format(sampler=trace.sampler, cfg=fmt(trace.cfg)))}</p>
<div class="controls"><button id="play" type="button">{esc(s["play"])}</button>
<input id="step-slider" type="range" min="0" max="{n - 1}" value="0" step="1" aria-label="{esc(s["step"])}">
<span id="step-now" class="now"></span></div>
<div class="legend">{legend}</div>
<div class="views"><figure><canvas id="view-far" width="460" height="460"></canvas><figcaption>{esc(s["d_far"])}</figcaption></figure>
<figure><canvas id="view-near" width="460" height="460"></canvas><figcaption>{esc(s["d_near"])}</figcaption></figure></div>
<h3>{esc(s["d_formula"])}</h3><pre id="step-formula"></pre><p id="step-check" class="ok"></p>
<h3>{esc(s["d_particle"])}</h3><pre id="step-particle"></pre>
<h3>{esc(s["d_denoiser"])}</h3><pre id="step-denoiser"></pre>
<h3>{esc(s["d_stats"])}</h3><table><tbody id="step-stats"></tbody></table>
<script type="application/json" id="toy-data">{_json(data)}</script>
<script type="application/json" id="words-data">{_json(words)}</script></section>
<section id="e"><h2>{esc(s["e_title"])}</h2>
<p class="what">{esc(s["e_what"].format(n=trace.particles, words=", ".join(listed), dist=fmt(dist)))}</p>{bars}
{f'<p class="note">{esc(s["e_cfg"].format(cfg=fmt(trace.cfg)))}</p>' if trace.cfg > 1 else ""}</section>
<section id="f"><h2>{esc(s["f_title"])}</h2>
<p>{esc(s["f_denoiser"])}</p><p>{esc(s["f_cfg"])}</p><p>{esc(s["f_ode"])}</p>
<p>{esc(s["f_sampler"].format(sampler=info.name, description=info.description))}</p><pre>{esc(info.formula)}</pre>
<p class="note">{esc(s["f_reference"].format(reference=info.reference))}</p>
<p class="note">{esc(s["files"])}</p></section>"""  # fmt: skip
    title = f"{s['title']} — {trace.prompt}"
    return (f'<!DOCTYPE html>\n<html lang="{lang}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{esc(title)}</title>'
            f"<style>{CSS}{TOY_CSS}</style></head><body><main>{body}</main><script>{TOY_JS}</script></body></html>\n")  # fmt: skip


def toy_walkthrough(trace: ToyTrace, lang: str = "en") -> str:
    """The same walk-through as text."""
    import textwrap

    s = toy_strings(lang)

    def wrap(text: str) -> str:
        return text if lang == "ja" else textwrap.fill(text, 100, break_on_hyphens=False)

    def head(title: str) -> str:
        return f"\n{'=' * 4} {title} {'=' * max(4, 60 - len(title))}"

    n = len(trace.steps)
    out = [s["title"], "-" * 40, f"{s['prompt']}: {trace.prompt or s['none']}",
           f"{s['negative']}: {trace.negative or s['none']}",
           f"{s['sampler']}: {trace.sampler} · {trace.schedule_used}", f"{s['steps']}: {n} · CFG {fmt(trace.cfg)} · "
           f"seed {trace.seed} · {s['particles']}: {trace.particles} · {s['followed']}: {trace.followed}"]  # fmt: skip
    out += [
        head(s["a_title"]),
        wrap(s["a_what"].format(words=len(trace.world.words), leak=fmt(trace.world.leak))),
    ]
    out += _words_text(trace, s)
    cols = [s["col_cluster"], s["col_mean"], s["col_std"], s["col_prior"], s["col_prompt"], s["col_negative"]]
    out.append("  " + " | ".join(cols))
    out += ["  " + " | ".join(str(v) for v in row[1:]) for row in _cluster_rows(trace)]
    out += [head(s["b_title"]),
            wrap(s["b_what"].format(seed=trace.seed, count=2 * trace.particles, sigma0=fmt(trace.sigmas[0]))),
            s["b_followed"].format(p=trace.followed), *("  " + t for t in _noise_lines(trace))]  # fmt: skip
    out += [head(s["c_title"]), wrap(s["c_what"].format(steps=n, schedule=trace.schedule_used)),
            s["c_formula"], "  " + trace.schedule_formula,
            f"  {s['col_step']:>8} {s['col_sigma']:>10} {s['col_abar']:>14}"]  # fmt: skip
    out += [f"  {i:>8} {a:>10} {b:>14}" for i, a, b in _schedule_rows(trace)]
    out += [head(s["d_title"]), wrap(s["d_what"].format(sampler=trace.sampler, cfg=fmt(trace.cfg)))]
    for i, st in enumerate(step_data(trace, s)):
        out.append(f"\n-- {s['step']} {i + 1} / {n}   σ {st['sigma']} → {st['sigma_next']}")
        out += ["  " + t for t in st["filled"]]
        out.append(s["d_particle"])
        out += ["  " + t for t in st["lines"]]
        out.append(s["d_denoiser"])
        out += ["  " + t for t in st["denoiser"]]
        out.append(st["check"])
        out.append("  " + "   ".join(f"{k}: {v}" for k, v in st["stats"]))
    fractions, dist = _end(trace)
    out += [head(s["e_title"]),
            wrap(s["e_what"].format(n=trace.particles, words=", ".join(_prompt_words(trace)), dist=fmt(dist)))]  # fmt: skip
    out += [f"  {w:<8} {100 * v:5.1f}%" for w, v in fractions.items()]
    if trace.cfg > 1:
        out.append(wrap(s["e_cfg"].format(cfg=fmt(trace.cfg))))
    info = _sampler_info(trace)
    out += [head(s["f_title"]), wrap(s["f_denoiser"]), wrap(s["f_cfg"]), wrap(s["f_ode"]),
            wrap(s["f_sampler"].format(sampler=info.name, description=info.description)), "  " + info.formula,
            wrap(s["f_reference"].format(reference=info.reference)), "", s["files"]]  # fmt: skip
    return "\n".join(out) + "\n"


def write_toy_report(
    trace: ToyTrace, folder: Path, *, lang: str = "en", html: bool = True
) -> dict[str, Path]:
    """Write ``trace.json`` and (``html``) ``index.html`` into ``folder``; returns their paths."""
    written = {"trace": write_toy_trace(trace, folder)}
    if html:
        written["html"] = folder / "index.html"
        written["html"].write_text(render_toy_html(trace, lang), encoding="utf-8")
    return written


def run(args: argparse.Namespace) -> int:
    """``glassforge explain --toy WORDS``: returns the exit code (0 ok, 2 bad input)."""
    from ..sampling.registry import UnknownNameError
    from ..toy.world import ToyWorld, UnknownWordError

    given = [flag for name, default, flag in MODEL_ONLY if getattr(args, name, default) != default]
    if given:
        verb = "does" if len(given) == 1 else "do"
        print(f"glassforge explain: error: {', '.join(given)} {verb} not apply with --toy (the 2-D toy world has "
              "no model, image size or batch); leave them out", file=sys.stderr)  # fmt: skip
        return 2
    try:
        trace = run_toy(ToyWorld.default(), args.prompt, negative=args.negative, sampler=args.sampler,
                        schedule=args.scheduler, steps=args.steps, cfg=args.cfg, seed=args.seed,
                        particles=args.particles)  # fmt: skip
    except (UnknownWordError, UnknownNameError, ValueError) as error:
        print(f"glassforge explain: error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out)
    written = write_toy_report(trace, out, lang=args.lang, html=args.format == "html")
    if args.format == "text":
        sys.stdout.write(toy_walkthrough(trace, args.lang))
    fractions = trace.end_fractions()
    ends = ", ".join(f"{w} {100 * fractions[w]:.0f}%" for w in _prompt_words(trace))
    print(f"explain --toy: {trace.particles} particles, {len(trace.steps)} steps of {trace.sampler}, seed "
          f"{trace.seed}; ended nearest {ends}", file=sys.stderr)  # fmt: skip
    for p in written.values():
        print(p, file=sys.stderr)
    return 0
