// Job types: GET /types (jobs per status, limits, pause), with pause/resume and the limits editable.
// Every change asks for confirmation first; the API's errors show in the notice or in the form.

import { api } from "./api.js";
import { confirmChange, fill, formDialog, formatNumber, h, hashFor, loader, pager, timeCell } from "./util.js";

const COUNTED = ["READY", "PROCESSING", "PENDING", "WAITING", "COMPLETED", "FAILED", "CANCELLED"];
const LIMIT_FIELDS = [
  { name: "max_running", label: "Max running", hint: "at most this many PROCESSING at once, across all executors" },
  { name: "max_running_per_key", label: "Max running per key", hint: "per concurrency_key" },
  { name: "rate_limit", label: "Rate limit", hint: "at most this many attempts started per window" },
  { name: "rate_period_seconds", label: "Rate window (seconds)", hint: "the rate limit's window; 60 when empty" },
];

export function limitsText(limits) {
  if (!limits) return "none";
  const parts = [];
  if (limits.max_running != null) parts.push(`${limits.max_running} running`);
  if (limits.max_running_per_key != null) parts.push(`${limits.max_running_per_key} per key`);
  if (limits.rate_limit != null) parts.push(`${limits.rate_limit} per ${limits.rate_period_seconds || 60} s`);
  return parts.join(", ");
}

export function mountTypes(root, { can, reportError, clearError, announce }) {
  const pages = pager(() => load());
  const body = h("tbody");
  const pauseInput = h("input#pause-type-name", { type: "text", placeholder: "type name", autocomplete: "off" });
  const pauseForm =
    can("PauseJobType") &&
    h(
      "form.filters#pause-type-form",
      {
        on: {
          submit: (event) => {
            event.preventDefault();
            if (pauseInput.value.trim()) change("pause", pauseInput.value.trim());
          },
        },
      },
      h("label", "Pause a type that has no jobs yet ", pauseInput),
      h("button", { type: "submit" }, "Pause"),
    );

  fill(
    root,
    h("h1", "Job types"),
    h(
      "p.muted",
      "Every type with jobs, limits or a pause. A paused type still accepts submits, but no executor starts a new " +
        "attempt of it until it is resumed; running attempts finish.",
    ),
    h(
      "div.table-wrap",
      h(
        "table.jobs#types-table",
        h(
          "thead",
          h(
            "tr",
            h("th", "type"),
            h("th", "state"),
            COUNTED.map((status) => h("th.num", status.toLowerCase())),
            h("th", "limits"),
            h("th", ""),
          ),
        ),
        body,
      ),
    ),
    pages.element,
    pauseForm,
  );

  const reads = loader(
    (signal) => api.listTypes({ page_size: 50, page_token: pages.token() }, signal),
    (reply) => {
      pages.loaded(reply);
      render(reply.types || []);
    },
    { reportError, clearError },
  );
  const load = reads.load;

  let lastRendered = "";
  function render(types) {
    // What the token may do is part of what is shown (the buttons).
    const key = JSON.stringify([types, can("PauseJobType"), can("ResumeJobType"), can("SetTypeLimits")]);
    if (key === lastRendered) return;
    lastRendered = key;
    fill(body, types.length ? types.map(row) : h("tr", h("td.empty", { colSpan: COUNTED.length + 4 }, "No job types yet.")));
  }

  function row(item) {
    const counts = item.counts || {};
    return h(
      "tr.type-row",
      { dataset: { type: item.type, paused: String(item.paused) } },
      h("td", h("a", { href: hashFor(["jobs"], { type: item.type }) }, item.type)),
      h(
        "td",
        item.paused
          ? [h("span.badge.status-failed", "paused"), " ", h("span.muted", "since "), timeCell(item.paused_at)]
          : h("span.badge.status-completed", "active"),
      ),
      COUNTED.map((status) => h("td.num", { dataset: { count: status } }, formatNumber(counts[status]))),
      h("td.limits", limitsText(item.limits)),
      h(
        "td.row-actions",
        can(item.paused ? "ResumeJobType" : "PauseJobType") &&
          h(
            "button.small",
            { type: "button", on: { click: () => change(item.paused ? "resume" : "pause", item.type) } },
            item.paused ? "Resume" : "Pause",
          ),
        can("SetTypeLimits") && h("button.small", { type: "button", on: { click: () => editLimits(item) } }, "Limits…"),
      ),
    );
  }

  async function change(action, type) {
    const question =
      action === "pause"
        ? [`Pause job type ${type}?`, "No executor will start a new attempt of it until it is resumed."]
        : [`Resume job type ${type}?`, "Executors start its READY jobs at once."];
    if (!(await confirmChange(...question))) return;
    try {
      if (action === "pause") await api.pauseType(type);
      else await api.resumeType(type);
      announce(`Job type ${type} ${action === "pause" ? "paused" : "resumed"}.`);
      pauseInput.value = "";
      await load();
    } catch (error) {
      reportError(error);
    }
  }

  function editLimits(item) {
    const limits = item.limits || {};
    const remove =
      item.limits && can("DeleteTypeLimits")
        ? h(
          "button#limits-remove",
          {
            type: "button",
            on: {
              click: async () => {
                if (!(await confirmChange(`Remove every limit of ${item.type}?`))) return;
                try {
                  await api.deleteLimits(item.type);
                  dialog.close();
                  announce(`Limits of ${item.type} removed.`);
                  await load();
                } catch (error) {
                  reportError(error);
                }
              },
            },
          },
          "Remove limits",
        )
      : null;
    const dialog = formDialog({
      id: "limits-dialog",
      title: `Limits of ${item.type}`,
      fields: LIMIT_FIELDS.map((field) => ({ ...field, value: limits[field.name] ?? "" })),
      extra: remove,
      confirmText: () => `Change the limits of ${item.type}? They apply to every executor at once.`,
      save: async (values) => {
        const body = {};
        for (const [name, value] of Object.entries(values)) if (value !== "") body[name] = Number(value);
        await api.setLimits(item.type, body);
        announce(`Limits of ${item.type} saved.`);
        await load();
      },
    });
  }

  load();
  return {
    refresh: load,
    unmount: reads.abort,
  };
}
