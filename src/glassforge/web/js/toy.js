// Toy world: words as clusters in the plane; particles flow from noise to them under the real sampler.

import { getLang, t } from "./i18n.js";
import { icon } from "./icons.js";
import { $, api, el, fillSelect, notify, num, on, shared } from "./util.js";

const STEP_MS = 650; // one sampler step of animation
const HOLD_MS = 1600; // pause on the final positions before starting again

let data = null;
let colours = [];
let pos = 0; // 0 … S: positions after `pos` steps (fractions in between)
let playing = true;
let holdUntil = 0;
let frame = null;
let last = null;
let shownStep = -1;
let busy = false;

export function init() {
  fillSelect($("#t-sampler"), shared.info.samplers);
  $("#t-sampler").value = shared.info.samplers.includes("DPM++ 2M") ? "DPM++ 2M" : shared.info.samplers[0];
  $("#t-form").addEventListener("submit", (e) => {
    e.preventDefault();
    run();
  });
  $("#t-play").addEventListener("click", () => setPlaying(!playing));
  $("#t-slider").addEventListener("input", () => {
    setPlaying(false);
    pos = parseInt($("#t-slider").value, 10);
    draw();
  });
  $("#t-show-d").addEventListener("change", draw);
  on("lang", () => data && !$("#page-toy").hidden && run(data.seed));
  window.addEventListener("resize", () => data && draw());
}

export function show() {
  if (!data && !busy) run();
  if (!frame) frame = requestAnimationFrame(tick);
}

export function hide() {
  cancelAnimationFrame(frame);
  frame = null;
  last = null;
}

function setPlaying(value) {
  playing = value;
  $("#t-play").innerHTML = icon(playing ? "pause" : "play");
  $("#t-play").setAttribute("aria-label", t(playing ? "pause" : "play"));
}

async function run(seed = null) {
  const q = new URLSearchParams({
    words: $("#t-words").value,
    sampler: $("#t-sampler").value,
    steps: $("#t-steps").value,
    cfg: $("#t-cfg").value,
    seed: seed ?? $("#t-seed").value,
    particles: $("#t-particles").value,
    lang: getLang(),
  });
  busy = true;
  $("#t-run").disabled = true;
  try {
    data = await api(`/api/v1/toy?${q}`);
  } catch (err) {
    notify(err.message);
    return;
  } finally {
    busy = false;
    $("#t-run").disabled = false;
  }
  const final = data.xs[data.xs.length - 1];
  colours = final.map(([x, y]) => {
    let best = null;
    let dist = Infinity;
    for (const c of data.clusters) {
      const d = (c.m[0] - x) ** 2 + (c.m[1] - y) ** 2;
      if (d < dist) [dist, best] = [d, c.c];
    }
    return best;
  });
  $("#t-slider").max = String(data.steps.length);
  $("#t-known").textContent = t("toy_info", {
    seed: data.seed, sampler: data.sampler, schedule: data.schedule, n: data.particles, words: data.words.join(", "),
  });
  ends();
  pos = 0;
  shownStep = -1;
  holdUntil = 0;
  setPlaying(true);
  draw();
  if (!frame && !$("#page-toy").hidden) frame = requestAnimationFrame(tick);
}

function tick(now) {
  frame = requestAnimationFrame(tick);
  if (!data) return;
  const dt = last === null ? 0 : now - last;
  last = now;
  if (!playing) return;
  const S = data.steps.length;
  if (pos >= S) {
    if (!holdUntil) holdUntil = now + HOLD_MS;
    if (now < holdUntil) return;
    holdUntil = 0;
    pos = 0;
  } else pos = Math.min(S, pos + dt / STEP_MS);
  draw();
}

function compress(x, y) {
  const c = data.compress;
  const r = Math.hypot(x, y);
  const s = r > 1e-12 ? (c * Math.asinh(r / c)) / r : 1;
  return [x * s, y * s];
}

function ease(f) {
  return f < 0.5 ? 2 * f * f : 1 - (-2 * f + 2) ** 2 / 2;
}

function draw() {
  if (!data) return;
  const canvas = $("#t-canvas");
  const dpr = window.devicePixelRatio || 1;
  const size = Math.max(200, Math.round((canvas.clientWidth || 560) * dpr));
  if (canvas.width !== size) [canvas.width, canvas.height] = [size, size];
  const g = canvas.getContext("2d");
  const c = data.compress;
  const half = c * Math.asinh(data.far / c) * 1.05;
  const px = ([x, y]) => [size / 2 + (x / half) * (size / 2), size / 2 - (y / half) * (size / 2)];
  const S = data.steps.length;
  const k = Math.min(Math.floor(pos), S);
  const f = ease(pos - k);
  g.clearRect(0, 0, size, size);
  g.fillStyle = "#fbfcfe";
  g.fillRect(0, 0, size, size);
  g.lineWidth = dpr;
  g.font = `${11 * dpr}px system-ui, sans-serif`;
  for (const r of [1, 2.5, 5, 10, 20, 40, 80].filter((v) => v <= data.far)) {
    const rr = ((c * Math.asinh(r / c)) / half) * (size / 2);
    g.strokeStyle = "#e3e8ef";
    g.beginPath();
    g.arc(size / 2, size / 2, rr, 0, 2 * Math.PI);
    g.stroke();
    g.fillStyle = "#9aa5b4";
    g.fillText(`|x| = ${r}`, size / 2 + rr * 0.71 + 3 * dpr, size / 2 - rr * 0.71);
  }
  for (const cl of data.clusters) {
    const [cx, cy] = px(compress(...cl.m));
    const r0 = Math.hypot(...cl.m);
    const rr = (((c * Math.asinh((r0 + 2 * cl.s) / c) - c * Math.asinh(Math.max(0, r0 - 2 * cl.s) / c)) / 2) / half) * (size / 2);
    g.globalAlpha = cl.on ? 0.28 : 0.1;
    g.fillStyle = cl.c;
    g.beginPath();
    g.arc(cx, cy, rr, 0, 2 * Math.PI);
    g.fill();
    g.globalAlpha = 1;
  }
  g.font = `600 ${13 * dpr}px system-ui, sans-serif`;
  g.textAlign = "center";
  for (const label of data.labels) {
    const [lx, ly] = px(compress(...label.at));
    g.fillStyle = label.c;
    g.globalAlpha = data.prompt_words[label.word] !== undefined || !Object.keys(data.prompt_words).length ? 1 : 0.45;
    g.fillText(label.word, lx, ly + 4 * dpr);
  }
  g.globalAlpha = 1;
  g.textAlign = "left";
  const a = data.xs[k];
  const b = data.xs[Math.min(k + 1, S)];
  const at = (p) => [a[p][0] + (b[p][0] - a[p][0]) * f, a[p][1] + (b[p][1] - a[p][1]) * f];
  if ($("#t-show-d").checked && k < S) {
    g.strokeStyle = "#e07b24";
    g.globalAlpha = 0.55;
    for (const d of data.ds[k]) {
      const [x, y] = px(compress(...d));
      g.beginPath();
      g.moveTo(x - 3 * dpr, y - 3 * dpr);
      g.lineTo(x + 3 * dpr, y + 3 * dpr);
      g.moveTo(x + 3 * dpr, y - 3 * dpr);
      g.lineTo(x - 3 * dpr, y + 3 * dpr);
      g.stroke();
    }
    g.globalAlpha = 1;
  }
  for (let p = 0; p < a.length; p++) {
    const [x, y] = px(compress(...at(p)));
    g.fillStyle = colours[p];
    g.globalAlpha = 0.8;
    g.beginPath();
    g.arc(x, y, 2.6 * dpr, 0, 2 * Math.PI);
    g.fill();
  }
  g.globalAlpha = 1;
  const fp = data.followed;
  g.strokeStyle = "#c0392b";
  g.lineWidth = 1.5 * dpr;
  g.beginPath();
  for (let i = 0; i <= k; i++) {
    const [x, y] = px(compress(...data.xs[i][fp]));
    if (i === 0) g.moveTo(x, y);
    else g.lineTo(x, y);
  }
  const [fx, fy] = px(compress(...at(fp)));
  g.lineTo(fx, fy);
  g.stroke();
  g.lineWidth = 2.5 * dpr;
  g.beginPath();
  g.arc(fx, fy, 6 * dpr, 0, 2 * Math.PI);
  g.stroke();
  g.fillStyle = "#1d2430";
  g.font = `${12 * dpr}px system-ui, sans-serif`;
  g.fillText(t("toy_after", { k: Math.min(k, S), n: S, sigma: num(data.sigmas[Math.min(k, S)], 4) }), 8 * dpr, 18 * dpr);
  const step = Math.min(k, S - 1);
  if (step !== shownStep) panel(step);
}

function panel(i) {
  shownStep = i;
  const s = data.steps[i];
  $("#t-slider").value = String(Math.min(Math.floor(pos), data.steps.length));
  $("#t-now").textContent = t("x_now_short", { i: i + 1, n: data.steps.length, sigma: s.sigma, next: s.sigma_next });
  $("#t-formula").textContent = s.filled.join("\n");
  $("#t-check").textContent = s.check;
  $("#t-particle").textContent = s.lines.join("\n");
  $("#t-denoiser").textContent = s.denoiser.join("\n");
  $("#t-stats").replaceChildren(...s.stats.map(([k, v]) => el("tr", {}, el("th", { scope: "row", text: k }), el("td", { text: v }))));
}

function ends() {
  const colourOf = Object.fromEntries(data.labels.map((l) => [l.word, l.c]));
  const rows = Object.entries(data.end_fractions).sort((x, y) => y[1] - x[1]);
  $("#t-end").replaceChildren(
    ...rows.map(([word, share]) =>
      el("div", { class: "bar-row" },
        el("span", { text: word }),
        el("span", { class: "fill", style: `width:${Math.max(1, 100 * share)}%;background:${colourOf[word]}` }),
        el("span", { class: "num", text: `${num(100 * share, 3)}%` }),
      ),
    ),
  ); // prettier-ignore
}
