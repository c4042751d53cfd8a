// The web UI's entry point: loads the server's lists, starts the pages, routes #/page/arg to them.

import * as explain from "./explain.js";
import * as generate from "./generate.js";
import * as history from "./history.js";
import { applyIcons } from "./icons.js";
import { applyI18n, getLang, setLang, t } from "./i18n.js";
import * as toy from "./toy.js";
import { $, $$, api, notify, on, shared } from "./util.js";
import * as workflow from "./workflow.js";

const PAGES = { generate, explain, toy, history, workflow };
let current = null;

function route() {
  const [name, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  const page = PAGES[name] ? name : "generate";
  const arg = rest.length ? decodeURIComponent(rest.join("/")) : null;
  for (const key of Object.keys(PAGES)) $(`#page-${key}`).hidden = key !== page;
  for (const link of $$("#nav a")) {
    if (link.dataset.page === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (current && current !== page && PAGES[current].hide) PAGES[current].hide();
  current = page;
  document.title = `${t(`nav_${page}`)} · glassforge`;
  PAGES[page].show(arg);
}

async function boot() {
  const select = $("#lang");
  select.value = getLang();
  select.addEventListener("change", () => setLang(select.value));
  applyI18n(document);
  applyIcons(document);
  $("#notice-close").addEventListener("click", () => ($("#notice").hidden = true));
  try {
    shared.info = await api("/api/v1/info");
  } catch (err) {
    notify(t("err_info", { error: err.message }));
    shared.info = { models: [], samplers: [], schedulers: [], defaults: {}, limits: {} };
  }
  for (const page of Object.values(PAGES)) page.init();
  on("lang", () => {
    if (current) document.title = `${t(`nav_${current}`)} · glassforge`;
  });
  window.addEventListener("hashchange", route);
  route();
  document.body.dataset.ready = "1"; // the browser tests wait for this
}

boot();
