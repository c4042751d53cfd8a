// History: a searchable grid of past jobs; each opens its parameters, image, rating and next actions.

import { t } from "./i18n.js";
import { icon } from "./icons.js";
import { $, api, el, emit, fillSelect, notify, on, shared, shortId, store } from "./util.js";
import { editorButton } from "./workflow.js";

const PAGE = 24;
let offset = 0;
let total = 0;
let open = null; // the job shown in the dialog

export function init() {
  const info = shared.info;
  fillSelect($("#h-model"), [["", t("any")], ...info.models.map((m) => [m.name, m.name])]);
  fillSelect($("#h-sampler"), [["", t("any")], ...info.samplers.map((s) => [s, s])]);
  $("#h-form").addEventListener("submit", (e) => {
    e.preventDefault();
    search(false);
  });
  $("#h-more").addEventListener("click", () => search(true));
  $("#h-d-close").addEventListener("click", () => $("#h-dialog").close());
  $("#h-d-up").addEventListener("click", () => rate(1));
  $("#h-d-down").addEventListener("click", () => rate(-1));
  $("#h-d-note").addEventListener("change", () => open && saveRating((current) => current).catch((err) => notify(err.message)));
  $("#h-d-again").addEventListener("click", again);
  $("#h-d-send").addEventListener("click", () => {
    emit("use-form", open.form);
    $("#h-dialog").close();
    location.hash = "#/generate";
  });
  $("#h-d-explain").addEventListener("click", () => go(`#/explain/${open.id}`));
  $("#h-d-workflow").addEventListener("click", () => go(`#/workflow/${open.id}`));
  $("#h-d-workflow").after(editorButton("h-d-editor", () => open));
  on("lang", () => {
    $("#h-model").options[0].textContent = t("any");
    $("#h-sampler").options[0].textContent = t("any");
    if (!$("#page-history").hidden) search(false);
  });
}

export function show() {
  search(false);
}

function go(hash) {
  $("#h-dialog").close();
  store.set("lastJob", open.id);
  location.hash = hash;
}

let latest = 0; // only the newest search may fill the grid

async function search(more) {
  const mine = ++latest;
  if (!more) offset = 0;
  const q = new URLSearchParams({ limit: PAGE, offset });
  for (const [key, sel] of [["q", "#h-q"], ["model", "#h-model"], ["sampler", "#h-sampler"], ["rating", "#h-rating"]]) {
    if ($(sel).value) q.set(key, $(sel).value);
  }
  let data;
  try {
    data = await api(`/api/v1/history?${q}`);
  } catch (err) {
    notify(err.message);
    return;
  }
  if (mine !== latest) return;
  total = data.total;
  const cards = data.rows.map(card);
  if (more) $("#h-grid").append(...cards);
  else $("#h-grid").replaceChildren(...cards);
  offset += data.rows.length;
  $("#h-count").textContent = t("h_count", { shown: offset, total });
  $("#h-more").hidden = offset >= total;
}

function badge(rating) {
  if (rating !== 1 && rating !== -1) return null;
  const span = el("span", { class: `badge ${rating === 1 ? "up" : "down"}`, role: "img", "aria-label": t(rating === 1 ? "rated_up" : "rated_down") });
  span.innerHTML = icon(rating === 1 ? "up" : "down", 16);
  return span;
}

function card(row) {
  const thumb = row.image_urls.length
    ? el("img", { src: row.image_urls[0], alt: "", loading: "lazy", class: (row.params && row.params.width <= 128) ? "px" : "" })
    : el("span", { class: "noimg", text: t("no_image") });
  const mark = badge(row.rating);
  return el("button", {
      type: "button", class: "card", dataset: { id: row.id },
      "aria-label": t("h_open", { prompt: row.prompt || shortId(row.id) }),
      onclick: () => details(row.id),
    },
    thumb,
    el("span", { class: "prompt", text: row.prompt || "—" }),
    el("span", { class: "meta", text: [row.model, row.sampler, row.seed !== null ? `seed ${row.seed}` : null].filter(Boolean).join(" · ") }),
    el("span", { class: `state ${row.status}`, text: `${t(`status_${row.status}`)} · ${row.kind}` }),
    mark,
  ); // prettier-ignore
}

async function details(id) {
  let job;
  try {
    job = await api(`/api/v1/jobs/${id}`);
  } catch (err) {
    notify(err.message);
    return;
  }
  open = job;
  $("#h-d-title").textContent = job.prompt || shortId(job.id);
  const f = job.form || {};
  const rows = [
    [t("prompt"), f.prompt || ""], [t("negative"), f.negative_prompt || "—"], [t("model"), job.model || f.model || ""],
    [t("seed"), f.seed ?? ""], [t("sampler"), `${job.sampler || f.sampler_name || ""} · ${f.scheduler || ""}`],
    [t("steps"), f.steps ?? ""], [t("cfg"), f.cfg_scale ?? ""], [t("size"), f.width ? `${f.width}×${f.height}` : ""],
    [t("status"), `${t(`status_${job.status}`)}${job.error ? `: ${job.error}` : ""}`], ["id", job.id],
  ]; // prettier-ignore
  $("#h-d-params").replaceChildren(...rows.map(([k, v]) => el("tr", {}, el("th", { scope: "row", text: k }), el("td", { text: String(v) }))));
  $("#h-d-images").replaceChildren(
    ...job.image_urls.map((src, k) => el("img", { src, alt: t("result_alt", { k: k + 1, prompt: job.prompt || "" }), class: f.width <= 128 ? "small" : "" })),
  );
  $("#h-d-infotext").textContent = (job.infotexts || []).join("\n\n");
  $("#h-d-note").value = job.note || "";
  $("#h-d-editor").disabled = !["txt2img", "explain"].includes(job.kind); // the jobs that have this graph
  buttons(job.rating ?? null);
  if (!$("#h-dialog").open) $("#h-dialog").showModal();
}

function buttons(rating) {
  $("#h-d-up").setAttribute("aria-pressed", String(rating === 1));
  $("#h-d-down").setAttribute("aria-pressed", String(rating === -1));
}

// Saves run one after another, each reading the rating when its turn comes: leaving the note field (its
// "change") and clicking 👍 happen together, and the later save must not undo the earlier one.
let saving = Promise.resolve();

function saveRating(pick) {
  const job = open;
  saving = saving.catch(() => {}).then(() => storeRating(job, pick(job.rating ?? null)));
  return saving;
}

async function storeRating(job, rating) {
  const note = $("#h-d-note").value || null;
  await api(`/api/v1/jobs/${job.id}/rating`, { method: "POST", body: { rating, note } });
  job.rating = rating;
  if (open === job) buttons(rating);
  const cardEl = $(`#h-grid .card[data-id="${job.id}"]`);
  if (cardEl) {
    const old = cardEl.querySelector(".badge");
    if (old) old.remove();
    const mark = badge(rating);
    if (mark) cardEl.append(mark);
  }
}

async function rate(value) {
  if (!open) return;
  try {
    await saveRating((current) => (current === value ? null : value));
  } catch (err) {
    notify(err.message);
  }
}

async function again() {
  try {
    const view = await api(`/api/v1/jobs/${open.id}/rerun`, { method: "POST", body: { explain: open.kind === "explain" } });
    $("#h-dialog").close();
    emit("use-form", view.form || open.form);
    location.hash = "#/generate";
    emit("follow", view);
  } catch (err) {
    notify(err.message);
  }
}
