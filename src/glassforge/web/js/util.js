// Small helpers shared by the pages: the API client, DOM building, saved settings, events, messages.

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

/** Create an element: el("button", {class: "x", text: "Go", onclick: f, "aria-label": "Go"}, child...). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : document.createTextNode(child));
  }
  return node;
}

/** Everything the pages share: the server's lists, the job the user looks at, events between pages. */
export const shared = { info: null, bus: new EventTarget() };

export function emit(name, detail) {
  shared.bus.dispatchEvent(new CustomEvent(name, { detail }));
}

export function on(name, handler) {
  shared.bus.addEventListener(name, (e) => handler(e.detail));
}

/** The server's API key (`glassforge serve --api-key`), or "". Open the UI once as `/?api_key=KEY`: the key
 * is kept in localStorage, sent by api() as a header, and set as a SameSite=Strict cookie so that image,
 * preview and report URLs (<img>, <iframe>) carry it too. */
function apiKey() {
  const url = new URL(location.href);
  if (url.searchParams.has("api_key")) {
    store.set("apiKey", url.searchParams.get("api_key"));
    url.searchParams.delete("api_key");
    history.replaceState(history.state, "", url);
  }
  const key = store.get("apiKey", "");
  if (key) document.cookie = `glassforge_api_key=${encodeURIComponent(key)}; path=/; SameSite=Strict`;
  return key;
}
let API_KEY = null;

/** fetch + JSON; a failed request throws an Error carrying the server's one-line message. */
export async function api(path, { method = "GET", body, signal } = {}) {
  if (API_KEY === null) API_KEY = apiKey();
  const init = { method, signal, headers: API_KEY ? { "X-API-Key": API_KEY } : {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!res.ok) {
    const err = new Error((data && data.detail) || `${res.status} ${res.statusText}`);
    err.status = res.status;
    throw err;
  }
  return data;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export const store = {
  get(key, fallback = null) {
    try {
      const raw = localStorage.getItem(`glassforge.${key}`);
      return raw === null ? fallback : JSON.parse(raw);
    } catch {
      return fallback;
    }
  },
  set(key, value) {
    try {
      localStorage.setItem(`glassforge.${key}`, JSON.stringify(value));
    } catch {
      /* private mode: settings are not kept */
    }
  },
};

let noticeTimer = null;

/** Show a message in the banner under the header (errors stay until closed, info fades). */
export function notify(message, kind = "error") {
  const box = $("#notice");
  $("#notice-text").textContent = message;
  box.classList.toggle("info", kind !== "error");
  box.hidden = false;
  clearTimeout(noticeTimer);
  if (kind !== "error") noticeTimer = setTimeout(() => (box.hidden = true), 4000);
}

/** A number with up to `digits` significant digits (as the explainer prints them). */
export function num(v, digits = 6) {
  if (v === null || v === undefined || v === "") return "";
  if (typeof v === "string") return v;
  if (v === 0) return "0";
  return String(Number(v.toPrecision(digits)));
}

export function seconds(v) {
  if (v === null || v === undefined) return "–";
  if (v < 60) return `${v.toFixed(v < 10 ? 1 : 0)} s`;
  const m = Math.floor(v / 60);
  return `${m} min ${Math.round(v - 60 * m)} s`;
}

export function shortId(id) {
  return id.length > 10 ? id.slice(0, 8) : id;
}

/** Copy text to the clipboard (the Clipboard API, else a hidden textarea). */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = el("textarea", { "aria-hidden": "true", style: "position:fixed;left:-9999px" });
    area.value = text;
    document.body.append(area);
    area.select();
    let ok = false;
    try {
      ok = document.execCommand("copy");
    } catch {
      ok = false;
    }
    area.remove();
    return ok;
  }
}

export const FINISHED = ["done", "error", "interrupted"];

/** Options for a <select>: values (or [value, label] pairs); keeps the current value when it is offered. */
export function fillSelect(select, items, keep = true) {
  const current = select.value;
  select.replaceChildren(
    ...items.map((item) => {
      const [value, label] = Array.isArray(item) ? item : [item, item];
      return el("option", { value, text: label });
    }),
  );
  if (keep && items.some((item) => (Array.isArray(item) ? item[0] : item) === current)) select.value = current;
}

/** Recent jobs for the job pickers: [value, label] pairs, newest first. */
export async function recentJobs(limit = 30) {
  const data = await api(`/api/v1/history?limit=${limit}`);
  return data.rows.map((r) => [r.id, jobLabel(r)]);
}

export function jobLabel(row) {
  const prompt = (row.prompt || "").slice(0, 48) || "—";
  return `${prompt} · ${row.kind} · ${row.status} · ${shortId(row.id)}`;
}
