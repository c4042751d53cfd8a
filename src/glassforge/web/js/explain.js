// Explain: one job's run step by step — live while it records, from the trace once it is finished.

import { getLang, t } from "./i18n.js";
import { icon } from "./icons.js";
import { lineChart, pathChart } from "./plot.js";
import { $, api, el, emit, fillSelect, jobLabel, notify, num, on, recentJobs, sleep, store } from "./util.js";

let cur = null; // {id, token, job, steps, index, follow, word, overview}
let player = null;

export function init() {
  $("#x-job").addEventListener("change", () => (location.hash = `#/explain/${$("#x-job").value}`));
  $("#x-slider").addEventListener("input", () => {
    if (!cur) return;
    const i = Math.min(parseInt($("#x-slider").value, 10), cur.steps.length - 1); // steps not recorded yet
    cur.follow = i === cur.steps.length - 1;
    stop();
    render(i);
  });
  $("#x-play").addEventListener("click", () => (player ? stop() : play()));
  $("#x-rerun").addEventListener("click", rerun);
  $("#x-report-show").addEventListener("click", () => {
    const frame = $("#x-report");
    frame.src = `/api/v1/jobs/${cur.id}/report?lang=${getLang()}`;
    frame.hidden = false;
    $("#x-report-show").hidden = true;
  });
  on("lang", () => {
    if (cur && !$("#page-explain").hidden) open(cur.id, cur.index);
  });
}

export async function show(arg) {
  let id = arg || store.get("lastJob");
  if (id) open(id);
  const items = await jobList(id);
  if (!id && items.length) {
    id = items[0][0]; // the newest job
    $("#x-job").value = id;
    open(id);
  } else if (!id) {
    cur = null;
    $("#x-body").hidden = true;
    $("#x-none").hidden = true;
    $("#x-status").textContent = t("x_no_job");
  }
}

export function hide() {
  stop();
  if (cur) cur.token = null; // stop polling
}

async function jobList(id) {
  try {
    const items = await recentJobs();
    if (id && !items.some(([v]) => v === id)) items.unshift([id, id]);
    fillSelect($("#x-job"), items, false);
    if (id) $("#x-job").value = id;
    return items;
  } catch (err) {
    notify(err.message);
    return [];
  }
}

function stop() {
  clearInterval(player);
  player = null;
  $("#x-play").innerHTML = icon("play");
  $("#x-play").setAttribute("aria-label", t("play"));
}

function play() {
  if (!cur || !cur.steps.length) return;
  if (cur.index >= cur.steps.length - 1) render(0);
  $("#x-play").innerHTML = icon("pause");
  $("#x-play").setAttribute("aria-label", t("pause"));
  player = setInterval(() => {
    if (cur.index >= cur.steps.length - 1) stop();
    else render(cur.index + 1);
  }, 700);
}

async function open(id, index = null) {
  stop();
  const token = {};
  cur = { id, token, job: null, steps: [], index: 0, follow: index === null, word: null, overview: null };
  $("#x-report").hidden = true;
  $("#x-report").removeAttribute("src");
  $("#x-status").textContent = t("loading");
  let job;
  try {
    job = await api(`/api/v1/jobs/${id}`);
  } catch (err) {
    $("#x-status").textContent = err.message;
    $("#x-body").hidden = true;
    return;
  }
  if (cur.token !== token) return;
  cur.job = job;
  if (!job.explained) {
    $("#x-body").hidden = true;
    $("#x-none").hidden = false;
    $("#x-none-text").textContent = job.kind === "explain" ? t("x_failed", { status: job.status, error: job.error || "" }) : t("x_not_recorded");
    $("#x-status").textContent = jobLabel(job);
    return;
  }
  $("#x-none").hidden = true;
  $("#x-body").hidden = false;
  params(job);
  let lastOverview = 0;
  for (;;) {
    let s;
    try {
      s = await api(`/api/v1/jobs/${id}/steps?since=${cur.steps.length}&limit=8&lang=${getLang()}`);
    } catch (err) {
      $("#x-status").textContent = err.message;
      return;
    }
    if (cur.token !== token) return;
    cur.steps.push(...s.steps);
    $("#x-slider").max = String(Math.max(0, (s.total || cur.steps.length) - 1)); // the whole run; recorded so far: clamped
    const now = Date.now();
    if (s.done || lastOverview === 0 || (s.steps.length && now - lastOverview > 1500)) {
      lastOverview = now;
      await overview(token, s.done);
      if (cur.token !== token) return;
    }
    if (s.steps.length) {
      if (index !== null && index < cur.steps.length) {
        render(index);
        index = null;
      } else if (cur.follow) render(cur.steps.length - 1);
      else render(cur.index);
    }
    const writing = s.live && cur.steps.length && cur.steps.length === s.total;
    $("#x-status").textContent = s.live
      ? writing ? t("x_writing") : cur.steps.length ? t("x_live", { n: cur.steps.length, total: s.total }) : t("x_waiting")
      : t("x_recorded", { n: cur.steps.length, status: t(`status_${s.status}`) });
    if (s.done) break;
    if (!s.steps.length) await sleep(400);
  }
  const finished = await api(`/api/v1/jobs/${id}`).catch(() => null);
  if (finished && cur.token === token) {
    cur.job = finished;
    params(finished);
  }
}

async function overview(token, final) {
  try {
    const o = await api(`/api/v1/jobs/${cur.id}/explain?lang=${getLang()}`);
    if (cur.token !== token) return;
    cur.overview = o;
    if (cur.word === null && o.words && o.words.length) cur.word = o.first_word ?? 0;
    tokens(o);
    decode(o);
    files(o, final);
    charts();
  } catch (err) {
    notify(err.message);
  }
}

function params(job) {
  const f = job.form || {};
  const rows = [
    [t("prompt"), f.prompt || ""],
    [t("negative"), f.negative_prompt || "—"],
    [t("model"), job.model || f.model || ""],
    [t("seed"), f.seed ?? ""],
    [t("sampler"), `${job.sampler || f.sampler_name || ""} · ${f.scheduler || ""}`],
    [t("steps"), f.steps ?? ""],
    [t("cfg"), f.cfg_scale ?? ""],
    [t("size"), f.width ? `${f.width}×${f.height}` : ""],
  ];
  $("#x-params").replaceChildren(...rows.map(([k, v]) => el("tr", {}, el("th", { scope: "row", text: k }), el("td", { text: String(v) }))));
  const img = $("#x-final");
  if (job.image_urls && job.image_urls.length) {
    img.src = job.image_urls[0];
    img.alt = t("result_alt", { k: 1, prompt: f.prompt || "" });
    img.closest("figure").hidden = false;
  } else img.closest("figure").hidden = true;
}

function figure(src, caption) {
  return el("figure", {}, el("img", { src, alt: caption }), el("figcaption", { text: caption }));
}

function render(i) {
  const s = cur.steps[i];
  if (!s) return;
  cur.index = i;
  $("#x-slider").value = String(i);
  $("#x-now").textContent = t("x_now", { i: i + 1, n: s.total, sigma: num(s.sigma, 4), next: num(s.sigma_next, 4), t: num(s.timestep, 4) });
  $("#x-x0").src = s.x0;
  $("#x-x0").alt = t("x_x0_alt", { i: i + 1 });
  $("#x-latent").replaceChildren(...s.latent.map((src, c) => figure(src, `c${c}`)));
  $("#x-eps").replaceChildren(...s.eps.map((src, c) => figure(src, `ε c${c}`)));
  const cfg = s.cond !== null;
  $("#x-cond").closest("figure").hidden = !cfg;
  $("#x-uncond").closest("figure").hidden = !cfg;
  if (cfg) {
    $("#x-cond").src = s.cond;
    $("#x-uncond").src = s.uncond;
  }
  $("#x-guided").src = s.x0;
  $("#x-guided-cap").textContent = s.cfg_scale !== null ? `${t("x_guided")}, w = ${num(s.cfg_scale)}` : t("x_guided");
  $("#x-formula").textContent = [`${s.sampler}: ${s.formula}`, "", ...s.filled].join("\n");
  $("#x-check").textContent = s.check || "";
  $("#x-elements").textContent = s.elements.map((e) => [`(c, y, x) = (${e.at.join(", ")})`, ...e.lines].join("\n")).join("\n\n");
  $("#x-stats").replaceChildren(...s.stats.map(([k, v]) => el("tr", {}, el("th", { scope: "row", text: k }), el("td", { text: v }))));
  words();
  charts();
}

function words() {
  const o = cur.overview;
  const s = cur.steps[cur.index];
  const list = (o && o.words) || [];
  const box = $("#x-words");
  box.replaceChildren(
    ...list.map((w, k) =>
      el("button", {
        type: "button",
        class: w.kind === "eos" ? "eos" : "",
        "aria-pressed": String(k === cur.word),
        text: w.label,
        onclick: () => {
          cur.word = k;
          words();
        },
      }),
    ),
  );
  const att = s && s.attention;
  const heat = $("#x-heat");
  if (!att || cur.word === null || !att.maps[cur.word]) {
    heat.hidden = true;
    $("#x-att-info").textContent = list.length ? "" : t("x_att_none");
    return;
  }
  heat.src = att.maps[cur.word];
  heat.alt = t("x_heat_alt", { word: list[cur.word].label });
  heat.hidden = false;
  $("#x-att-info").textContent = `“${list[cur.word].label}”: ${att.info[cur.word]}  ${att.rest}`;
}

function charts() {
  const o = cur && cur.overview;
  if (!o) return;
  const i = cur.index;
  if (o.pseudo) {
    const tracks = [
      { name: t("x_path_x"), pts: o.pseudo.x, color: "#2f6fb3" },
      { name: t("x_path_x0"), pts: o.pseudo.x0, color: "#e07b24" },
    ];
    $("#x-pseudo").innerHTML = pathChart({ tracks, xlabel: "PC 1", ylabel: "PC 2", marker: i, title: t("x_pseudo") });
  }
  if (o.schedule) {
    const sig = o.schedule.sigmas.map(Number);
    $("#x-schedule").innerHTML = lineChart({
      xs: sig.map((_, k) => k), series: [{ name: "σ", ys: sig, color: "#2f6fb3" }], xlabel: t("step"), ylabel: "σ (log)",
      logy: true, marker: i, title: t("x_schedule"),
    });
    $("#x-schedule-what").textContent = o.schedule.name ? `${o.schedule.name}: ${o.schedule.formula}` : t("x_schedule_live");
  }
}

function tokens(o) {
  if (!o.tokens) return;
  const table = (rows) =>
    el("table", { class: "tokens" },
      el("thead", {}, el("tr", {}, ...["#", t("tok_chunk"), "id", t("tok_text"), t("tok_weight"), t("tok_kind")].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, ...rows.map((r) => el("tr", { class: r.kind }, ...[r.position, r.chunk, r.id, r.text, num(r.weight, 4), r.kind].map((v) => el("td", { text: String(v) }))))),
    ); // prettier-ignore
  $("#x-tokens").replaceChildren(el("h3", { text: t("prompt") }), table(o.tokens.cond), el("h3", { text: t("negative") }), table(o.tokens.uncond));
}

function decode(o) {
  const d = o.decode;
  if (!d) {
    $("#x-decode").replaceChildren(el("p", { class: "note", text: t("x_decode_later") }));
    return;
  }
  const lines = ["R", "G", "B"].map((c, k) => `${c}: v = ${num(d.rgb[k])} → (v + 1)/2 = ${num(d.halves[k])} → clamp = ${num(d.clamped[k])} → ×255 → ${d.bytes[k]}`);
  $("#x-decode").replaceChildren(
    el("p", { class: "what", text: t("x_decode_what", { latent: d.latent_shape.join("×"), scale: num(d.scale_factor), pixels: d.pixel_shape.join("×"), min: num(d.min, 4), max: num(d.max, 4), clamped: (100 * d.clamped_share).toFixed(1) }) }),
    el("p", { text: t("x_decode_pixel", { y: d.pixel[0], x: d.pixel[1] }) }),
    el("pre", { class: "formula", text: lines.join("\n") }),
  );
}

function files(o) {
  const f = o.files || {};
  const links = [];
  const report = f[`report_${getLang()}`] || f.report_en;
  if (report) links.push(el("a", { href: report, target: "_blank", rel: "noopener", text: t("x_report_open") }));
  for (const name of ["trace.json", "trace.safetensors", "denoise.gif"]) if (f[name]) links.push(el("a", { href: f[name], text: name }));
  $("#x-files").replaceChildren(...(links.length ? links : [el("span", { class: "note", text: t("x_files_later") })]));
  $("#x-report-show").hidden = !report || !$("#x-report").hidden;
}

async function rerun() {
  if (!cur) return;
  try {
    const view = await api(`/api/v1/jobs/${cur.id}/rerun`, { method: "POST", body: { explain: true } });
    store.set("lastJob", view.id);
    emit("job", view.id);
    location.hash = `#/explain/${view.id}`;
  } catch (err) {
    notify(err.message);
  }
}
