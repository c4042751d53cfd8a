// Two small SVG charts (no library): lines over a shared x axis, and 2-D paths (the pseudo-space).

const W = 480;
const H = 270;
const PAD = { l: 52, r: 14, t: 14, b: 40 };

function esc(s) {
  return String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}

function ticks(lo, hi, n = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n;
  const step = 10 ** Math.floor(Math.log10(raw));
  const nice = [1, 2, 2.5, 5, 10].map((m) => m * step).find((s) => s >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / nice) * nice; v <= hi + 1e-9 * nice; v += nice) out.push(Number(v.toPrecision(10)));
  return out;
}

function label(v) {
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e4 || a < 1e-2)) return v.toExponential(0);
  return String(Number(v.toPrecision(4)));
}

function frame(xlo, xhi, ylo, yhi, { xlabel = "", ylabel = "", logy = false } = {}) {
  const fx = (x) => PAD.l + ((x - xlo) / (xhi - xlo || 1)) * (W - PAD.l - PAD.r);
  const ty = (y) => (logy ? Math.log10(Math.max(y, 1e-12)) : y);
  const [a, b] = [ty(ylo), ty(yhi)];
  const fy = (y) => H - PAD.b - ((ty(y) - a) / (b - a || 1)) * (H - PAD.t - PAD.b);
  const parts = [`<rect x="${PAD.l}" y="${PAD.t}" width="${W - PAD.l - PAD.r}" height="${H - PAD.t - PAD.b}" fill="#fff" stroke="#d9dee6"/>`];
  for (const x of ticks(xlo, xhi)) {
    parts.push(`<line x1="${fx(x)}" x2="${fx(x)}" y1="${PAD.t}" y2="${H - PAD.b}" stroke="#eef1f5"/>`);
    parts.push(`<text x="${fx(x)}" y="${H - PAD.b + 15}" text-anchor="middle">${esc(label(x))}</text>`);
  }
  let yt = ticks(ylo, yhi);
  if (logy) {
    const marks = [];
    for (let e = Math.floor(a); e <= Math.ceil(b); e++) for (const m of [1, 2, 5]) marks.push([m, Number((m * 10 ** e).toPrecision(6))]);
    const inside = marks.filter(([, v]) => v >= ylo * 0.999 && v <= yhi * 1.001);
    const powers = inside.filter(([m]) => m === 1).map(([, v]) => v);
    yt = powers.length >= 2 ? powers : inside.length >= 2 ? inside.map(([, v]) => v) : yt; // under a decade: plain ticks
  }
  for (const y of yt) {
    parts.push(`<line x1="${PAD.l}" x2="${W - PAD.r}" y1="${fy(y)}" y2="${fy(y)}" stroke="#eef1f5"/>`);
    parts.push(`<text x="${PAD.l - 6}" y="${fy(y) + 4}" text-anchor="end">${esc(label(y))}</text>`);
  }
  parts.push(`<text x="${(PAD.l + W - PAD.r) / 2}" y="${H - 6}" text-anchor="middle" fill="#5b6574">${esc(xlabel)}</text>`);
  parts.push(`<text transform="translate(13 ${(PAD.t + H - PAD.b) / 2}) rotate(-90)" text-anchor="middle" fill="#5b6574">${esc(ylabel)}</text>`);
  return { fx, fy, parts };
}

function svg(parts, title) {
  return `<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(title)}" font-family="system-ui, sans-serif" font-size="11">${parts.join("")}</svg>`;
}

function legend(items) {
  return items.map(([name, color], k) => `<g transform="translate(${PAD.l + 8 + k * 120} ${PAD.t + 6})"><rect width="10" height="10" fill="${color}"/><text x="14" y="9">${esc(name)}</text></g>`).join("");
}

/** series: [{name, ys, color}] over xs; marker: index drawn as a ring on every series. */
export function lineChart({ xs, series, xlabel, ylabel, logy = false, marker = null, title = "" }) {
  const ys = series.flatMap((s) => s.ys).filter((v) => Number.isFinite(v) && (!logy || v > 0));
  if (!xs.length || !ys.length) return "";
  let [ylo, yhi] = [Math.min(...ys), Math.max(...ys)];
  if (!logy) [ylo, yhi] = [Math.min(0, ylo), yhi === ylo ? ylo + 1 : yhi];
  const { fx, fy, parts } = frame(Math.min(...xs), Math.max(...xs), ylo, yhi, { xlabel, ylabel, logy });
  for (const s of series) {
    const pts = xs.map((x, i) => [x, s.ys[i]]).filter(([, y]) => Number.isFinite(y) && (!logy || y > 0));
    parts.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${pts.map(([x, y]) => `${fx(x).toFixed(1)},${fy(y).toFixed(1)}`).join(" ")}"/>`);
    for (const [x, y] of pts) parts.push(`<circle cx="${fx(x).toFixed(1)}" cy="${fy(y).toFixed(1)}" r="2.5" fill="${s.color}"/>`);
    if (marker !== null && Number.isFinite(s.ys[marker]) && (!logy || s.ys[marker] > 0)) {
      parts.push(`<circle class="marker" cx="${fx(xs[marker]).toFixed(1)}" cy="${fy(s.ys[marker]).toFixed(1)}" r="7" fill="none" stroke="#c0392b" stroke-width="2.5"/>`);
    }
  }
  if (series.length > 1) parts.push(legend(series.map((s) => [s.name, s.color])));
  return svg(parts, title);
}

/** tracks: [{name, pts: [[x, y]...], color}]; marker: index highlighted on every track. */
export function pathChart({ tracks, xlabel, ylabel, marker = null, title = "" }) {
  const all = tracks.flatMap((t) => t.pts);
  if (!all.length) return "";
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  const padx = (Math.max(...xs) - Math.min(...xs)) * 0.05 || 1;
  const pady = (Math.max(...ys) - Math.min(...ys)) * 0.08 || 1;
  const { fx, fy, parts } = frame(Math.min(...xs) - padx, Math.max(...xs) + padx, Math.min(...ys) - pady, Math.max(...ys) + pady, { xlabel, ylabel });
  for (const t of tracks) {
    parts.push(`<polyline fill="none" stroke="${t.color}" stroke-width="1.6" stroke-opacity=".8" points="${t.pts.map(([x, y]) => `${fx(x).toFixed(1)},${fy(y).toFixed(1)}`).join(" ")}"/>`);
    t.pts.forEach(([x, y], i) => {
      const r = i === 0 ? 4 : 2.6;
      parts.push(`<circle cx="${fx(x).toFixed(1)}" cy="${fy(y).toFixed(1)}" r="${r}" fill="${t.color}"/>`);
    });
    if (marker !== null && t.pts[marker]) {
      const [x, y] = t.pts[marker];
      parts.push(`<circle class="marker" cx="${fx(x).toFixed(1)}" cy="${fy(y).toFixed(1)}" r="7.5" fill="none" stroke="#c0392b" stroke-width="2.5"/>`);
    }
  }
  parts.push(legend(tracks.map((t) => [t.name, t.color])));
  return svg(parts, title);
}
