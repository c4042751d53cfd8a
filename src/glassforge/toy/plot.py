"""Draw a toy run: particles travelling from seeded noise to the clusters of the prompt's words.

Five panels:

1. the whole journey in a radially compressed view (r ↦ c·asinh(r/c): directions kept, the huge
   starting cloud at |x| ≈ σ_max squeezed so the clusters stay visible; rings give true radii);
2. the arrival in the data region, in true pseudo-space units, with the word clusters (1σ, 2σ);
3. what the denoiser predicts each step, x̂0 = D(x_i, σ_i): first a blur near the prompt's mean,
   then a choice of cluster;
4. the σ schedule per step, log scale, coloured like the paths;
5. where the particles ended: the share nearest each word.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .demo import ToyRun
    from .world import ToyWorld

WORD_COLOURS = {
    "dog": "#c0392b",
    "cat": "#e67e22",
    "bird": "#2e86c1",
    "fish": "#17a589",
    "flower": "#d63384",
    "tree": "#27ae60",
    "house": "#7d5a3c",
    "car": "#5b4fb4",
}
_FALLBACK = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
STEP_CMAP = "viridis"
COMPRESS = 1.5  # c of the radial compression r ↦ c·asinh(r/c)
NEAR = 4.3  # smallest half-width of the data-region panels
FAR = 9.0  # points beyond ±FAR may fall outside the data-region panels


def data_box(world: ToyWorld, points: np.ndarray, quantile: float = 0.01) -> tuple[tuple, tuple]:
    """A square (xlim, ylim) holding every cluster with its label and (almost) all of ``points``."""
    margin = 1.3
    means, stds = world.means.numpy(), world.stds.numpy()
    lo = (means - 2 * stds[:, None]).min(0) - margin
    hi = (means + 2 * stds[:, None]).max(0) + margin
    lo, hi = np.minimum(lo, -NEAR), np.maximum(hi, NEAR)
    pts = points.reshape(-1, 2)
    pts = pts[np.isfinite(pts).all(-1)]
    if len(pts):
        lo = np.minimum(lo, np.clip(np.quantile(pts, quantile, axis=0) - 0.4, -FAR, None))
        hi = np.maximum(hi, np.clip(np.quantile(pts, 1 - quantile, axis=0) + 0.4, None, FAR))
    centre = (lo + hi) / 2
    half = float((hi - lo).max()) / 2
    return (centre[0] - half, centre[0] + half), (centre[1] - half, centre[1] + half)


def word_colour(world: ToyWorld, word: str) -> str:
    return WORD_COLOURS.get(word) or _FALLBACK[world.words.index(word) % len(_FALLBACK)]


def compress(xy: np.ndarray, c: float = COMPRESS) -> np.ndarray:
    """Radial compression r ↦ c·asinh(r/c) (identity near 0, logarithmic far out)."""
    r = np.linalg.norm(xy, axis=-1, keepdims=True)
    scale = np.where(r > 1e-12, c * np.arcsinh(r / c) / np.maximum(r, 1e-12), 1.0)
    return xy * scale


def _path_segments(xs: np.ndarray, sub: int, transform=None) -> tuple[np.ndarray, np.ndarray]:
    """Straight moves x_i → x_{i+1} cut into ``sub`` pieces (so a transform bends them correctly).

    Returns segments [S·N·sub, 2, 2] and each segment's step index.
    """
    steps = xs.shape[0] - 1
    t = np.linspace(0.0, 1.0, sub + 1)[None, :, None, None]  # [1, sub+1, 1, 1]
    pts = xs[:-1, None] + t * (xs[1:, None] - xs[:-1, None])  # [S, sub+1, N, 2]
    if transform is not None:
        pts = transform(pts)
    seg = np.stack([pts[:, :-1], pts[:, 1:]], axis=-2)  # [S, sub, N, 2, 2]
    step = np.broadcast_to(np.arange(steps)[:, None, None], seg.shape[:3])
    return seg.reshape(-1, 2, 2), step.reshape(-1)


def _draw_clusters(ax, run: ToyRun, transform=None, labels: bool = True, label_radius: float = 0.8) -> None:
    from matplotlib.patches import Polygon

    world = run.world
    listed = set(run.cond.words.weights)
    negative = set(run.negative.words.weights) if run.negative is not None else set()
    theta = np.linspace(0, 2 * math.pi, 64)
    circle = np.stack([np.cos(theta), np.sin(theta)], -1)
    for cluster in world.clusters:
        colour = word_colour(world, cluster.word)
        on = cluster.word in listed or not listed
        for k, alpha in ((2.0, 0.10), (1.0, 0.22)):
            pts = np.asarray(cluster.mean) + k * cluster.std * circle
            if transform is not None:
                pts = transform(pts)
            ax.add_patch(
                Polygon(
                    pts,
                    closed=True,
                    facecolor=colour,
                    alpha=alpha * (1.6 if on else 0.6),
                    edgecolor="none",
                    zorder=1,
                )
            )
            ax.add_patch(
                Polygon(
                    pts,
                    closed=True,
                    fill=False,
                    edgecolor=colour,
                    lw=1.3 if on else 0.6,
                    alpha=0.9 if on else 0.45,
                    ls="-" if cluster.word not in negative else "--",
                    zorder=1,
                )
            )
    if not labels:
        return
    means = world.means.numpy()
    for word in world.words:
        centre = means[[c.word == word for c in world.clusters]].mean(0)
        r = np.linalg.norm(centre)
        pos = centre * (r + label_radius) / max(r, 1e-9)
        if transform is not None:
            pos = transform(pos)
        on = word in listed
        text = ("− " if word in negative else "") + word
        ax.text(
            *pos,
            text,
            ha="center",
            va="center",
            fontsize=11 if on else 9,
            fontweight="bold" if on else "normal",
            color=word_colour(world, word),
            alpha=1.0 if on or not listed else 0.7,
            zorder=6,
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.7},
            clip_on=True,
        )


def _draw_paths(ax, xs: np.ndarray, transform=None, sub: int = 1, lw: float = 0.6, alpha: float = 0.5):
    from matplotlib.collections import LineCollection

    seg, step = _path_segments(xs, sub, transform)
    lc = LineCollection(seg, cmap=STEP_CMAP, linewidths=lw, alpha=alpha, zorder=3)
    lc.set_array(step.astype(float))
    lc.set_clim(0, max(xs.shape[0] - 2, 1))
    ax.add_collection(lc)
    return lc


def _follow_one(ax, pts: np.ndarray, numbers: bool = True, start: int = 0) -> None:
    """Highlight particle #0: its path as a thick line with its step numbers."""
    import matplotlib.patheffects as pe

    halo = [pe.withStroke(linewidth=2.2, foreground="white")]
    ax.plot(
        *pts.T, color="k", lw=1.4, zorder=7, path_effects=[pe.withStroke(linewidth=3, foreground="white")]
    )
    ax.scatter(*pts.T, s=16, c="k", zorder=8, linewidths=0)
    if not numbers:
        return
    lo, hi = ax.get_xlim(), ax.get_ylim()
    placed: list[np.ndarray] = []
    span = hi[1] - hi[0]
    for i, p in enumerate(pts):
        if not (lo[0] < p[0] < lo[1] and hi[0] < p[1] < hi[1]):
            continue
        if any(np.linalg.norm(p - q) < 0.045 * span for q in placed):
            continue  # too close to a label already drawn
        placed.append(p)
        ax.annotate(
            str(start + i),
            p,
            xytext=(4, 3),
            textcoords="offset points",
            fontsize=7.5,
            fontweight="bold",
            zorder=9,
            path_effects=halo,
        )


def _end_colours(run: ToyRun) -> list[str]:
    world = run.world
    idx = world.nearest_word(run.xs[-1]).numpy()
    return [word_colour(world, world.words[i]) for i in idx]


def _panel_far(ax, run: ToyRun) -> None:
    xs = run.xs.numpy()
    sigma_max = float(run.sigmas[0])
    _draw_paths(ax, xs, compress, sub=8, lw=0.5, alpha=0.45)
    _draw_clusters(ax, run, compress, labels=True, label_radius=0.9)
    theta = np.linspace(0, 2 * math.pi, 200)
    circle = np.stack([np.cos(theta), np.sin(theta)], -1)
    far = float(np.linalg.norm(xs[0], axis=-1).max())
    rings = [r for r in (10, 30, 100) if r < far * 1.05]
    for r in rings:
        ax.plot(*compress(r * circle).T, color="0.75", lw=0.6, ls=":", zorder=0)
        ax.text(
            *compress(np.array([r * math.cos(0.35), r * math.sin(0.35)])),
            f"|x|={r}",
            fontsize=7,
            color="0.5",
            ha="left",
            va="bottom",
        )
    ax.plot(*compress(sigma_max * circle).T, color="0.35", lw=0.9, ls="--", zorder=0)
    ax.text(
        *compress(np.array([0.0, -sigma_max])),
        f"σ_max = {sigma_max:.2f}",
        fontsize=8,
        color="0.3",
        ha="center",
        va="top",
    )
    start = compress(xs[0])
    ax.scatter(*start.T, s=7, c="0.55", marker="o", zorder=4, linewidths=0, label="start  x_T = σ_max·z")
    ax.scatter(
        *compress(xs[-1]).T,
        s=12,
        c=_end_colours(run),
        edgecolors="k",
        linewidths=0.3,
        zorder=5,
        label="end  x_0",
    )
    lim = float(np.abs(start).max()) * 1.08 + 0.3
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_xticks([])
    ax.set_yticks([])
    _follow_one(ax, compress(xs[:, 0]))
    ax.plot([], [], color="k", lw=1.4, marker="o", ms=3, label="particle #0 (numbers: x_i before step i)")
    ax.set_title(
        "① the whole journey: noise → words\n(radially compressed, r ↦ 1.5·asinh(r/1.5))", fontsize=10
    )
    ax.legend(loc="lower left", fontsize=7, framealpha=0.85)


def _panel_near(ax, run: ToyRun) -> None:
    xs = run.xs.numpy()
    _draw_clusters(ax, run)
    lc = _draw_paths(ax, xs, lw=0.7, alpha=0.55)
    xlim, ylim = data_box(run.world, xs[-1], quantile=0.005)
    inside = (xs[0] > [xlim[0], ylim[0]]).all(-1) & (xs[0] < [xlim[1], ylim[1]]).all(-1)
    if inside.any():
        ax.scatter(*xs[0][inside].T, s=7, c="0.55", zorder=4, linewidths=0)
    ax.scatter(*xs[-1].T, s=14, c=_end_colours(run), edgecolors="k", linewidths=0.35, zorder=5)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    _follow_one(ax, xs[:, 0])
    ax.set_title(
        "② arrival in the data region\n(true pseudo-space units; rings = 1σ, 2σ of each cluster)", fontsize=10
    )
    ax.grid(True, color="0.92", lw=0.5)
    ax.tick_params(labelsize=8)
    return lc


def _panel_x0(ax, run: ToyRun) -> None:
    from matplotlib.collections import LineCollection

    d = run.denoised.numpy()  # [S, N, 2]
    _draw_clusters(ax, run)
    if d.shape[0] > 1:
        lines = np.transpose(d, (1, 0, 2))  # [N, S, 2]
        ax.add_collection(LineCollection(lines, colors="0.45", linewidths=0.3, alpha=0.25, zorder=2))
    steps = np.broadcast_to(np.arange(d.shape[0])[:, None], d.shape[:2])
    ax.scatter(
        d[..., 0].ravel(),
        d[..., 1].ravel(),
        c=steps.ravel(),
        cmap=STEP_CMAP,
        s=6,
        alpha=0.7,
        vmin=0,
        vmax=max(d.shape[0] - 1, 1),
        linewidths=0,
        zorder=3,
    )
    mean = run.world.mixture(run.cond).mean().numpy()
    ax.scatter(
        *mean, marker="*", s=180, c="gold", edgecolors="k", linewidths=0.8, zorder=6, label="E[x0 | prompt]"
    )
    xlim, ylim = data_box(run.world, d)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    _follow_one(ax, d[:, 0])
    ax.plot([], [], color="k", lw=1.4, marker="o", ms=3, label="particle #0: x̂0 at step i")
    ax.grid(True, color="0.92", lw=0.5)
    ax.tick_params(labelsize=8)
    ax.legend(loc="lower left", fontsize=7, framealpha=0.85)
    if run.negative is None:
        title = (
            "③ the model's guess each step: x̂0 = D(x_i, σ_i)\n(early: a blur near the mean; late: one word)"
        )
    else:
        title = (
            f"③ the guided guess each step: x̂0 = D_neg + {run.cfg:g}·(D_prompt − D_neg)\n"
            "(CFG > 1 extrapolates away from the negative prompt)"
        )
    ax.set_title(title, fontsize=10)


def _panel_sigmas(ax, run: ToyRun) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator

    s = run.step_sigmas.numpy()
    steps = run.steps
    cmap = plt.get_cmap(STEP_CMAP)
    colours = [cmap(i / max(steps - 1, 1)) for i in range(steps)]
    idx = np.arange(steps)
    ax.bar(
        idx, s[:, 0], color=colours, width=0.7, zorder=2, label="σ_i  (noise level at the start of step i)"
    )
    norms = run.xs.norm(dim=-1).mean(-1).numpy()
    ax.plot(
        np.arange(steps + 1) - 0.5,
        norms,
        color="k",
        lw=1.1,
        marker="o",
        ms=3,
        zorder=4,
        label="mean |x| of the particles (between steps)",
    )
    radius = float(run.world.means.norm(dim=-1).mean())
    ax.axhline(radius, color="0.4", lw=0.8, ls="--", zorder=3)
    ax.text(
        steps - 0.45,
        radius * 1.07,
        f"cluster ring |μ| ≈ {radius:.2g}",
        ha="right",
        va="bottom",
        fontsize=7,
        color="0.3",
    )
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 3.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlim(-0.7, steps - 0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step i   (bar colour = the colour of step i in the paths above)", fontsize=8)
    ax.set_ylabel("pseudo-space length (log)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(True, axis="y", color="0.9", lw=0.5, zorder=0)
    if steps <= 25:
        for i in idx:
            ax.text(
                i,
                s[i, 0] * 0.8,
                f"{s[i, 0]:.3g}",
                ha="center",
                va="top",
                fontsize=6.5,
                color="white" if i < steps * 0.6 else "black",
                rotation=0 if steps <= 12 else 90,
                zorder=5,
            )
    low = min(float(s[:, 0][s[:, 0] > 0].min()) if (s[:, 0] > 0).any() else 1e-2, float(norms.min()))
    ax.set_ylim(low * 0.5, max(float(s[:, 0].max()), float(norms.max())) * 1.6)
    ax.legend(loc="upper right", fontsize=7, framealpha=0.9)
    ax.set_title(
        f"④ the σ schedule ({run.schedule_used}): σ_i → {s[-1, 1]:g} in {steps} steps, and how far "
        "the particles are from the centre",
        fontsize=10,
    )


def _panel_fractions(ax, run: ToyRun) -> None:
    world = run.world
    fractions = run.end_fractions()
    listed = set(run.cond.words.weights)
    words = list(world.words)[::-1]
    values = [100 * fractions[w] for w in words]
    ax.barh(words, values, color=[word_colour(world, w) for w in words], alpha=0.85)
    for y, v in enumerate(values):
        ax.text(v + 1.5, y, f"{v:.1f}%", va="center", fontsize=7.5)
    for label in ax.get_yticklabels():
        if label.get_text() in listed:
            label.set_fontweight("bold")
    ax.set_xlim(0, 118)
    ax.tick_params(labelsize=8)
    ax.set_xlabel("% of particles nearest the word's cluster at the end", fontsize=8)
    ax.set_title("⑤ where the particles landed", fontsize=10)


def title_text(run: ToyRun) -> str:
    from .demo import describe_prompt

    head = (
        f"prompt “{run.cond.prompt}”  ·  sampler {run.sampler}  ·  schedule {run.schedule_used}  ·  "
        f"{run.steps} steps  ·  CFG {run.cfg:g}  ·  seed {run.seed}  ·  {run.particles} particles"
    )
    detail = f"conditioning: {describe_prompt(run.cond)}"
    if run.negative is not None:
        detail += f"   ·   negative “{run.negative.prompt}”: {describe_prompt(run.negative)}"
    detail += (
        f"   ·   denoiser calls: {run.calls.get('cond', 0)} cond + {run.calls.get('uncond', 0)} uncond"
        f"   ·   each dot is one “image” in a 2-D pseudo-space; each word is a cluster"
    )
    return head + "\n" + detail


def plot_run(run: ToyRun, path: str, dpi: int = 110) -> None:
    """Draw ``run`` to a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.gridspec import GridSpec
    from matplotlib.ticker import MaxNLocator

    fig = plt.figure(figsize=(17, 10.5))
    top = GridSpec(1, 3, figure=fig, wspace=0.12, left=0.035, right=0.98, top=0.875, bottom=0.355)
    bottom = GridSpec(
        1, 2, figure=fig, width_ratios=[2.1, 1], wspace=0.1, left=0.05, right=0.98, top=0.245, bottom=0.055
    )
    ax_far = fig.add_subplot(top[0, 0], aspect="equal")
    ax_near = fig.add_subplot(top[0, 1], aspect="equal")
    ax_x0 = fig.add_subplot(top[0, 2], aspect="equal")
    _panel_far(ax_far, run)
    lc = _panel_near(ax_near, run)
    _panel_x0(ax_x0, run)
    _panel_sigmas(fig.add_subplot(bottom[0, 0]), run)
    _panel_fractions(fig.add_subplot(bottom[0, 1]), run)
    bar = fig.colorbar(lc, cax=fig.add_axes((0.3, 0.305, 0.4, 0.011)), orientation="horizontal")
    bar.set_label("step i along the paths (noise → clean)", fontsize=8, labelpad=2)
    bar.ax.tick_params(labelsize=7)
    bar.ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    bar.solids.set_alpha(1.0)
    fig.suptitle(title_text(run), fontsize=11.5, y=0.975, linespacing=1.6)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
