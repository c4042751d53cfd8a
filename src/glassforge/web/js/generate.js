// Generate: the form, the progress with live x0 previews per step, the result with its infotext.

import { t } from "./i18n.js";
import { $, FINISHED, api, copyText, el, emit, fillSelect, notify, num, on, seconds, shared, sleep, store } from "./util.js";
import { editorButton } from "./workflow.js";

let following = null; // id of the job the page follows
let job = null; // the finished job shown as the result
let urls = []; // object URLs of live previews (revoked on reset)
let statusKey = null; // what the status line says, to re-say it in another language

const FIELDS = [
  ["prompt", "#g-prompt", String],
  ["negative_prompt", "#g-negative", String],
  ["model", "#g-model", String],
  ["sampler_name", "#g-sampler", String],
  ["scheduler", "#g-scheduler", String],
  ["steps", "#g-steps", parseInt],
  ["cfg_scale", "#g-cfg", parseFloat],
  ["seed", "#g-seed", parseInt],
  ["width", "#g-width", parseInt],
  ["height", "#g-height", parseInt],
  ["batch_size", "#g-batch-size", parseInt],
  ["n_iter", "#g-batch-count", parseInt],
];

export function readForm() {
  const out = {};
  for (const [key, sel, parse] of FIELDS) {
    const value = parse($(sel).value);
    if (value !== "" && !Number.isNaN(value)) out[key] = value;
  }
  return out;
}

export function fillForm(form) {
  for (const [key, sel] of FIELDS) {
    if (form[key] === undefined || form[key] === null) continue;
    const input = $(sel);
    if (input.tagName === "SELECT" && ![...input.options].some((o) => o.value === String(form[key]))) {
      const wanted = String(form[key]).replace(/\.(safetensors|ckpt)$/, "");
      const match = [...input.options].find((o) => o.value.replace(/\.(safetensors|ckpt)$/, "") === wanted);
      if (match) input.value = match.value;
      continue;
    }
    input.value = form[key];
  }
  countTokens("#g-prompt", "#g-prompt-count", false);
  countTokens("#g-negative", "#g-negative-count", true);
}

function modelSize(name) {
  const m = (shared.info.models || []).find((x) => x.name === name);
  return m ? m.default_size : 512;
}

export function init() {
  const info = shared.info;
  fillSelect($("#g-model"), info.models.map((m) => m.name));
  fillSelect($("#g-sampler"), info.samplers);
  fillSelect($("#g-scheduler"), info.schedulers);
  const d = info.defaults || {};
  const model = info.current_model || (info.models[0] || {}).name || "";
  const size = modelSize(model);
  fillForm({ ...d, model, width: size, height: size, seed: -1 });
  const saved = store.get("form");
  if (saved) fillForm(saved);
  if (info.limits && info.limits.max_steps) $("#g-steps").max = info.limits.max_steps;
  $("#g-explain").checked = store.get("explain", true);

  $("#gen-form").addEventListener("submit", (e) => {
    e.preventDefault();
    generate();
  });
  document.addEventListener("keydown", (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === "Enter" && !$("#page-generate").hidden) {
      e.preventDefault();
      generate();
    }
  });
  $("#g-model").addEventListener("change", () => {
    const s = modelSize($("#g-model").value);
    $("#g-width").value = s;
    $("#g-height").value = s;
  });
  $("#g-seed-random").addEventListener("click", () => ($("#g-seed").value = -1));
  $("#g-seed-reuse").addEventListener("click", () => {
    const seed = store.get("lastSeed");
    if (seed === null) notify(t("no_last_seed"), "info");
    else $("#g-seed").value = seed;
  });
  $("#g-explain").addEventListener("change", () => store.set("explain", $("#g-explain").checked));
  $("#g-interrupt").addEventListener("click", interrupt);
  $("#g-copy").addEventListener("click", async () => {
    if (job && (await copyText($("#g-infotext").textContent))) notify(t("copied"), "info");
  });
  $("#g-send").addEventListener("click", () => job && fillForm(job.form));
  $("#g-open-explain").addEventListener("click", () => job && (location.hash = `#/explain/${job.id}`));
  $("#g-down").after(editorButton("g-open-editor", () => job)); // after the rating pair, which stays together
  $("#g-up").addEventListener("click", () => rate(1));
  $("#g-down").addEventListener("click", () => rate(-1));
  let timer = null;
  for (const [input, out, negative] of [["#g-prompt", "#g-prompt-count", false], ["#g-negative", "#g-negative-count", true]]) {
    $(input).addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => countTokens(input, out, negative), 250);
    });
  }
  on("lang", () => statusKey && setStatus(...statusKey));
  on("use-form", (form) => fillForm(form));
  on("follow", (view) => followJob(view));
}

export function show() {}

async function countTokens(input, out, negative) {
  const text = $(input).value;
  const steps = parseInt($("#g-steps").value, 10) || 20;
  try {
    const r = await api(`/api/v1/tokenize?negative=${negative}&steps=${steps}&prompt=${encodeURIComponent(text)}`);
    const box = $(out);
    const split = r.chunks.length > 1 ? ` (${r.chunks.map((c) => c.tokens).join(" + ")})` : "";
    box.textContent = `${r.count}/${r.max}${split}`;
    box.classList.toggle("over", r.chunks.length > 1);
    box.title = r.chunks.map((c, k) => t("chunk_tokens", { k: k + 1, n: c.tokens })).join(" · ");
    box.setAttribute("aria-label", t("token_count", { count: r.count, max: r.max, chunks: r.chunks.length }));
  } catch {
    $(out).textContent = "";
  }
}

async function generate() {
  const body = readForm();
  store.set("form", body);
  const explain = $("#g-explain").checked;
  try {
    const view = await api(explain ? "/api/v1/explain" : "/api/v1/jobs", { method: "POST", body });
    followJob(view);
  } catch (err) {
    notify(err.message);
  }
}

async function interrupt() {
  if (!following) return;
  try {
    await api(`/api/v1/jobs/${following}/interrupt`, { method: "POST" });
  } catch (err) {
    notify(err.message);
  }
}

function setStatus(key, vars = {}) {
  statusKey = [key, vars];
  $("#g-status").textContent = t(key, vars);
}

function reset() {
  for (const u of urls) URL.revokeObjectURL(u);
  urls = [];
  job = null;
  $("#g-strip").replaceChildren();
  $("#g-live").hidden = true;
  $("#g-result").hidden = true;
  $("#g-progress").classList.remove("done", "stopped");
}

function progress(j) {
  const p = j.progress;
  const pct = Math.round(100 * (FINISHED.includes(j.status) && j.status === "done" ? 1 : p.fraction));
  $("#g-progress .bar").style.width = `${pct}%`;
  $("#g-progress").setAttribute("aria-valuenow", String(pct));
  $("#g-progress").classList.toggle("done", j.status === "done");
  $("#g-progress").classList.toggle("stopped", j.status === "interrupted" || j.status === "error");
  if (j.status === "pending") setStatus("st_queued", { pos: (j.queue_position ?? 0) + 1 });
  else if (j.status === "running" && !p.step) setStatus("st_loading");
  else if (j.status === "running") {
    const speed = p.s_per_it ? `${num(p.s_per_it, 3)} s/it` : "– s/it";
    setStatus(p.batches > 1 ? "st_running_batch" : "st_running", {
      step: p.step, total: p.total, batch: p.batch + 1, batches: p.batches, speed, eta: seconds(p.eta),
    });
  } else if (j.status === "done") setStatus("st_done", { time: seconds((j.finished || 0) - (j.started || 0)), steps: j.steps_done });
  else if (j.status === "interrupted") setStatus("st_interrupted", { steps: j.steps_done });
  else if (j.status === "error") setStatus("st_error", { error: j.error || "" });
}

function addFrame(src, step, total) {
  $("#g-live").hidden = false;
  $("#g-preview").src = src;
  $("#g-preview").alt = t("preview_alt", { step, total });
  $("#g-preview-cap").textContent = t("preview_cap", { step, total });
  const fig = el("figure", { role: "listitem" }, el("img", { src, alt: t("preview_alt", { step, total }) }), el("figcaption", { text: String(step) }));
  $("#g-strip").append(fig);
  const strip = $("#g-strip");
  strip.scrollLeft = strip.scrollWidth;
}

/** Follow a job (a job view from the API) until it finishes: progress, previews, then the result. */
export async function followJob(view) {
  const id = view.id;
  following = id;
  reset();
  store.set("lastJob", id);
  emit("job", id);
  $("#g-interrupt").disabled = false;
  let next = 0; // explain jobs: the next recorded step to fetch
  let batch = 0;
  let shown = null; // plain jobs: the "batch/step" of the last preview shown
  while (following === id) {
    let j;
    try {
      j = await api(`/api/v1/jobs/${id}`);
    } catch (err) {
      notify(err.message);
      break;
    }
    if (following !== id) break;
    progress(j);
    const finished = FINISHED.includes(j.status);
    if (j.kind === "explain" && (j.status === "running" || j.status === "done" || (j.status === "interrupted" && j.explained))) {
      if (j.progress.batch !== batch && j.status === "running") [batch, next] = [j.progress.batch, 0];
      for (;;) {
        const s = await api(`/api/v1/jobs/${id}/steps?since=${next}&limit=20&batch=${batch}`);
        for (const step of s.steps) addFrame(step.x0, step.i + 1, step.total);
        next = s.next;
        if (!finished || s.done || !s.steps.length) break;
      }
    } else if (j.status === "running" && j.progress.step > 0) {
      const key = `${j.progress.batch}/${j.progress.step}`;
      if (key !== shown) {
        shown = key;
        const res = await fetch(`/api/v1/jobs/${id}/preview`);
        if (res.ok) {
          const u = URL.createObjectURL(await res.blob());
          urls.push(u);
          addFrame(u, j.progress.step, j.progress.total);
        }
      }
    }
    if (finished) {
      result(j);
      break;
    }
    await sleep(250);
  }
  if (following === id) $("#g-interrupt").disabled = true;
}

function result(j) {
  job = j;
  if (j.form && j.form.seed !== undefined) store.set("lastSeed", j.form.seed);
  const images = j.image_urls.map((src, k) =>
    el("img", { src, alt: t("result_alt", { k: k + 1, prompt: j.prompt || "" }), class: j.params && j.params.width <= 128 ? "small" : "" }),
  );
  $("#g-images").replaceChildren(...images);
  $("#g-infotext").textContent = (j.infotexts || []).join("\n\n") || j.error || "";
  $("#g-result").hidden = !images.length && !j.infotexts.length;
  $("#g-live").hidden = images.length > 0; // the result replaces the live picture; the strip stays
  $("#g-open-explain").disabled = false;
  $("#g-open-editor").disabled = false;
  ratingButtons(j.rating ?? null);
  emit("finished", j);
}

function ratingButtons(rating) {
  $("#g-up").setAttribute("aria-pressed", String(rating === 1));
  $("#g-down").setAttribute("aria-pressed", String(rating === -1));
}

async function rate(value) {
  if (!job) return;
  const rating = job.rating === value ? null : value;
  try {
    await api(`/api/v1/jobs/${job.id}/rating`, { method: "POST", body: { rating } });
    job.rating = rating;
    ratingButtons(rating);
    notify(t(rating === null ? "unrated" : "rated"), "info");
  } catch (err) {
    notify(err.message);
  }
}
