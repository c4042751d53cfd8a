// Workflow: the job as the built-in txt2img node graph (read-only SVG), each node with its status.

import { readForm } from "./generate.js";
import { t } from "./i18n.js";
import { $, api, el, fillSelect, notify, on, recentJobs, shared, sleep, store } from "./util.js";

const TYPE_COLOURS = { MODEL: "#8e7cc3", CLIP: "#d4b000", VAE: "#e05555", CONDITIONING: "#ef8f1f", LATENT: "#d063cf", IMAGE: "#3d8fd6" };
const STATUS = {
  idle: ["#ffffff", "#9aa5b4"], pending: ["#f3f4f6", "#9aa5b4"], running: ["#e3effc", "#2f6fb3"], done: ["#e6f4ea", "#1e7a46"],
  error: ["#fdecea", "#b3261e"], interrupted: ["#fff3e0", "#b85c00"], skipped: ["#f3f4f6", "#c3c9d2"],
}; // prettier-ignore
const NODE_W = 200;
const LINE = 17;
const HEAD = 30;
const FOOT = 24;
const GAP_X = 44;
const GAP_Y = 26;

let token = null;
let download = null;

export function init() {
  $("#w-job").addEventListener("change", () => (location.hash = `#/workflow/${$("#w-job").value}`));
  on("lang", () => {
    if (!$("#page-workflow").hidden) show($("#w-job").value || null);
  });
  legend();
}

export function show(arg) {
  const id = arg || store.get("lastJob");
  jobs(id);
  load(id || null);
  $("#w-editor").href = editorUrl(id || null, id ? null : readForm());
}

/** The node editor with a job's graph loaded (its glassforge extension reads `glassforge_job` and fetches
 * the job's workflow), or with the graph of form parameters (`glassforge_form`) when there is no job. */
export function editorUrl(job, form = null) {
  const editor = (shared.info && shared.info.comfy_editor) || "/comfy/";
  if (job) return `${editor}?glassforge_job=${encodeURIComponent(job)}`;
  return form ? `${editor}?glassforge_form=${encodeURIComponent(JSON.stringify(form))}` : editor;
}

/** A button that opens `job()`'s graph in the node editor, for the pages whose HTML has none. */
export function editorButton(id, job) {
  return el("button", { type: "button", id, dataset: { i18n: "w_editor" }, text: t("w_editor"), onclick: () => job() && (location.href = editorUrl(job().id)) });
}

export function hide() {
  token = null;
}

function legend() {
  $("#w-legend").replaceChildren(
    ...Object.entries(STATUS).map(([name, [fill, stroke]]) => el("span", {}, el("i", { style: `background:${fill};border:2px solid ${stroke}` }), t(`node_${name}`))),
  );
}

async function jobs(id) {
  try {
    const items = [["", t("w_form")], ...(await recentJobs())];
    if (id && !items.some(([v]) => v === id)) items.splice(1, 0, [id, id]);
    fillSelect($("#w-job"), items, false);
    $("#w-job").value = id || "";
  } catch (err) {
    notify(err.message);
  }
}

async function load(id) {
  const mine = {};
  token = mine;
  legend();
  for (;;) {
    let g;
    try {
      g = id ? await api(`/api/v1/jobs/${id}/workflow`) : await api("/api/v1/workflow", { method: "POST", body: readForm() });
    } catch (err) {
      $("#w-graph").replaceChildren(el("p", { class: "note", text: err.message }));
      return;
    }
    if (token !== mine) return;
    draw(g);
    if (download) URL.revokeObjectURL(download);
    download = URL.createObjectURL(new Blob([JSON.stringify(g.workflow, null, 2)], { type: "application/json" }));
    $("#w-download").href = download;
    if (!id || !["pending", "running"].includes(g.job_status)) return;
    await sleep(1000);
    if (token !== mine) return;
  }
}

function esc(s) {
  return String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}

function short(v) {
  if (v === "") return '""';
  const s = typeof v === "number" && !Number.isInteger(v) ? String(Number(v.toPrecision(6))) : String(v);
  return s.length > 24 ? `${s.slice(0, 23)}…` : s;
}

function layout(g) {
  const depth = {};
  const incoming = (id) => g.links.filter((l) => l.to === id);
  const d = (id) => {
    if (depth[id] === undefined) depth[id] = Math.max(0, ...incoming(id).map((l) => d(l.from) + 1));
    return depth[id];
  };
  const columns = [];
  for (const n of g.nodes) (columns[d(n.id)] ||= []).push(n);
  const boxes = {};
  let height = 0;
  columns.forEach((col, c) => {
    let y = 12;
    for (const n of col) {
      const inputs = incoming(n.id).map((l) => l.input);
      const lines = Math.max(inputs.length, n.outputs.length) + Object.keys(n.widgets).length;
      const h = HEAD + LINE * Math.max(lines, 1) + FOOT;
      boxes[n.id] = { x: 12 + c * (NODE_W + GAP_X), y, h, inputs, node: n };
      y += h + GAP_Y;
    }
    height = Math.max(height, y);
  });
  return { boxes, width: 12 + columns.length * (NODE_W + GAP_X) - GAP_X + 12, height };
}

function draw(g) {
  const { boxes, width, height } = layout(g);
  const parts = [];
  for (const l of g.links) {
    const a = boxes[l.from];
    const b = boxes[l.to];
    const x1 = a.x + NODE_W;
    const y1 = a.y + HEAD + LINE * l.slot + LINE / 2;
    const x2 = b.x;
    const y2 = b.y + HEAD + LINE * b.inputs.indexOf(l.input) + LINE / 2;
    const dx = Math.max(30, (x2 - x1) / 2);
    parts.push(`<path d="M${x1} ${y1} C${x1 + dx} ${y1} ${x2 - dx} ${y2} ${x2} ${y2}" fill="none" stroke="${TYPE_COLOURS[l.type] || "#888"}" stroke-width="2.5"><title>${esc(l.type)}</title></path>`);
  }
  for (const { x, y, h, inputs, node } of Object.values(boxes)) {
    const [fill, stroke] = STATUS[node.status] || STATUS.idle;
    const out = [`<g class="node ${esc(node.status)}" data-id="${esc(node.id)}" transform="translate(${x} ${y})">`];
    out.push(`<rect class="box" width="${NODE_W}" height="${h}" rx="8" fill="${fill}" stroke="${stroke}" stroke-width="2"/>`);
    out.push(`<rect width="${NODE_W}" height="${HEAD - 4}" rx="8" fill="${stroke}" fill-opacity=".14"/>`);
    out.push(`<text x="10" y="18" font-weight="600">${esc(`#${node.id} ${node.title}`)}</text>`);
    inputs.forEach((name, k) => {
      const cy = HEAD + LINE * k + LINE / 2;
      out.push(`<circle cx="0" cy="${cy}" r="4.5" fill="#fff" stroke="#5b6574"/><text x="10" y="${cy + 4}" fill="#5b6574">${esc(name)}</text>`);
    });
    let row = Math.max(inputs.length, node.outputs.length);
    for (const [k, v] of Object.entries(node.widgets)) {
      out.push(`<text x="10" y="${HEAD + LINE * row + LINE / 2 + 4}"><tspan fill="#5b6574">${esc(k)}</tspan> ${esc(short(v))}</text>`);
      row++;
    }
    node.outputs.forEach((name, k) => {
      const cy = HEAD + LINE * k + LINE / 2;
      out.push(`<text x="${NODE_W - 10}" y="${cy + 4}" text-anchor="end" fill="${TYPE_COLOURS[name] || "#5b6574"}" font-weight="600">${esc(name)}</text><circle cx="${NODE_W}" cy="${cy}" r="4.5" fill="${TYPE_COLOURS[name] || "#888"}"/>`);
    });
    const p = node.progress;
    const status = t(`node_${node.status}`) + (p ? ` · ${t("step")} ${p.step}/${p.total}${p.batches > 1 ? ` · ${p.batch + 1}/${p.batches}` : ""}` : "");
    out.push(`<text x="10" y="${h - 8}" font-weight="600" fill="${stroke}">${esc(status)}</text></g>`);
    parts.push(out.join(""));
  }
  $("#w-graph").innerHTML = `<svg width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif" font-size="12">${parts.join("")}</svg>`;
  $("#w-graph").setAttribute("aria-label", t("w_graph_label", { n: g.nodes.length, status: g.job_status ? t(`status_${g.job_status}`) : t("w_form") }));
}
