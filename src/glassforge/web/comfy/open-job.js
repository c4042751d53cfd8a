// glassforge's extension for the ComfyUI frontend at /comfy/: open a glassforge job (or the web UI's form)
// in the node editor, ready to Queue.
//
//   /comfy/?glassforge_job=<job id>      the job's graph (GET /api/v1/jobs/<id>/workflow)
//   /comfy/?glassforge_form=<JSON>       the graph of these form parameters (POST /api/v1/workflow)
//
// The frontend imports this module at boot because GET /api/extensions lists it. The graph is glassforge's
// built-in text-to-image workflow in ComfyUI's API format; the app's own API-format loader (loadApiJson,
// the one that opens a dropped workflow_api.json) turns it into nodes and links. Seeds are set to "fixed",
// so Queue makes the job's image again. An unknown job leaves the editor as it was, with a warning.

const app = window.comfyAPI.app.app;
const JOB = "glassforge_job";
const FORM = "glassforge_form";

/** The API-format workflow the page's address asks for, with a name for its tab; null if it asks for none. */
async function requested(query) {
  if (query.get(JOB)) {
    const id = query.get(JOB);
    const graph = await fetchJson(`/api/v1/jobs/${encodeURIComponent(id)}/workflow`);
    return { workflow: graph.workflow, name: `glassforge job ${id.slice(0, 8)}` };
  }
  if (query.get(FORM)) {
    let form;
    try {
      form = JSON.parse(query.get(FORM));
    } catch (err) {
      throw new Error(`${FORM}: not JSON (${err.message}); expected the Generate form's parameters`);
    }
    const graph = await fetchJson("/api/v1/workflow", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(form),
    });
    return { workflow: graph.workflow, name: "glassforge form" };
  }
  return null;
}

async function fetchJson(url, options = {}) {
  const res = await fetch(url, { cache: "no-store", ...options });
  const body = await res.json().catch(() => null);
  if (!res.ok) throw new Error((body && (body.detail || body.error)) || `${res.status} ${res.statusText}`);
  return body;
}

/** Resolves once the frontend has put its first graph on the canvas (the previous or the default
 * workflow; the restore runs after the extensions' setup), so ours replaces it and is not replaced. */
function restored() {
  const manager = app.extensionManager;
  if (manager.setting.get("Comfy.Workflow.Persist") === false) return Promise.resolve(); // nothing to wait for
  return new Promise((resolve) => {
    const started = Date.now();
    const poll = () => {
      if (manager.workflow.activeWorkflow || Date.now() - started > 60_000) resolve();
      else setTimeout(poll, 50);
    };
    poll();
  });
}

function warn(message) {
  console.warn(`glassforge: ${message}`);
  app.extensionManager.toast.add({ severity: "warn", summary: "glassforge", detail: message, life: 8000 });
}

let loading = false; // while our graph is being built: its seeds are "fixed" (see nodeCreated)

function load({ workflow, name }) {
  loading = true;
  try {
    app.loadApiJson(workflow, name);
  } finally {
    loading = false;
  }
  app.graph.setDirtyCanvas(true, true);
}

app.registerExtension({
  name: "glassforge.OpenJob",
  nodeCreated(node) {
    // called as loadApiJson creates each node, so the tab's saved state (undo, "modified") has "fixed"
    if (!loading) return;
    for (const widget of node.widgets ?? []) if (widget.name === "control_after_generate") widget.value = "fixed";
  },
  setup() {
    const query = new URLSearchParams(location.search);
    if (!query.get(JOB) && !query.get(FORM)) return;
    const wanted = requested(query); // fetched while the frontend restores its own graph
    wanted.catch(() => {}); // reported below, after the restore
    void (async () => {
      await restored();
      let graph;
      try {
        graph = await wanted;
      } catch (err) {
        warn(`could not open ${query.get(JOB) ? `job ${query.get(JOB)}` : "the form's workflow"}: ${err.message}`);
        return;
      }
      try {
        load(graph);
      } catch (err) {
        warn(`could not load the workflow into the editor: ${err.message}`);
        return;
      }
      // loaded: a reload keeps the user's edits (the frontend restores them) instead of loading it again
      query.delete(JOB);
      query.delete(FORM);
      const rest = query.toString();
      history.replaceState(history.state, "", `${location.pathname}${rest ? `?${rest}` : ""}${location.hash}`);
    })();
  },
});
