// The jobs table: GET /jobs newest first, filtered by status and type, paged with next_page_token
// (keyset paging: every page costs the same however deep, and nothing is counted).

import { api } from "./api.js";
import {
  CANCELLABLE,
  RETRYABLE,
  STATUSES,
  fill,
  h,
  hashFor,
  statusBadge,
  timeCell,
} from "./util.js";

const PAGE_SIZES = [20, 50, 100, 200];

export function mountJobs(root, { query, stats, act, navigate, reportError, clearError }) {
  const state = {
    status: STATUSES.includes(query.get("status")) ? query.get("status") : "",
    type: query.get("type") || "",
    pageSize: PAGE_SIZES.includes(Number(query.get("page_size"))) ? Number(query.get("page_size")) : 50,
    tokens: [""], // the page_token of every page visited, for "newer"
    page: 0,
    nextToken: "",
  };

  const statusSelect = h(
    "select#filter-status",
    { name: "status", on: { change: () => setFilter({ status: statusSelect.value }) } },
    h("option", { value: "" }, "any status"),
    STATUSES.map((status) => h("option", { value: status }, status)),
  );
  statusSelect.value = state.status;
  const typeList = h("datalist#known-types");
  const typeInput = h("input#filter-type", {
    name: "type",
    type: "search",
    placeholder: "any type",
    list: "known-types",
    value: state.type,
    autocomplete: "off",
    on: { change: () => setFilter({ type: typeInput.value.trim() }) },
  });
  const sizeSelect = h(
    "select#page-size",
    { name: "page_size", on: { change: () => setFilter({ pageSize: Number(sizeSelect.value) }) } },
    PAGE_SIZES.map((size) => h("option", { value: String(size) }, `${size} per page`)),
  );
  sizeSelect.value = String(state.pageSize);
  const newer = h("button#page-newer", { type: "button", on: { click: () => go(state.page - 1) } }, "← Newer");
  const older = h("button#page-older", { type: "button", on: { click: () => go(state.page + 1) } }, "Older →");
  const pageLabel = h("span.page-label");
  const body = h("tbody");
  const table = h(
    "table.jobs#jobs-table",
    h(
      "thead",
      h(
        "tr",
        h("th.num", "job"),
        h("th", "type"),
        h("th", "status"),
        h("th.num", "priority"),
        h("th.num", "attempts"),
        h("th", "created"),
        h("th", "finished"),
        h("th", "error"),
        h("th", ""),
      ),
    ),
    body,
  );
  const summary = h("p.muted#jobs-summary");

  fill(
    root,
    h("h1", "Jobs"),
    h(
      "form.filters",
      { on: { submit: (event) => event.preventDefault() }, "aria-label": "filters" },
      h("label", "Status ", statusSelect),
      h("label", "Type ", typeInput),
      typeList,
      h("label", sizeSelect),
      h(
        "button",
        {
          type: "button",
          on: {
            click: () => {
              typeInput.value = "";
              statusSelect.value = "";
              setFilter({ status: "", type: "" });
            },
          },
        },
        "Clear",
      ),
    ),
    h("div.table-wrap", table),
    h("nav.pager", newer, pageLabel, older),
    summary,
  );

  function setFilter(change) {
    Object.assign(state, change, { tokens: [""], page: 0, nextToken: "" });
    // Keep the address bookmarkable without adding a history entry per keystroke.
    const hash = hashFor(["jobs"], { status: state.status, type: state.type, page_size: state.pageSize === 50 ? "" : state.pageSize });
    history.replaceState(null, "", hash);
    load();
  }

  function go(page) {
    if (page < 0 || (page > state.page && !state.nextToken)) return;
    if (page > state.page) state.tokens[page] = state.nextToken;
    state.page = page;
    load();
  }

  let inFlight = null;
  async function load() {
    if (inFlight) inFlight.abort();
    const controller = new AbortController();
    inFlight = controller;
    root.setAttribute("aria-busy", "true");
    try {
      const reply = await api.listJobs(
        {
          status: state.status,
          type: state.type,
          page_size: state.pageSize,
          page_token: state.tokens[state.page],
        },
        controller.signal,
      );
      if (controller.signal.aborted) return;
      render(reply);
      clearError();
    } catch (error) {
      if (error.name !== "AbortError") reportError(error);
    } finally {
      if (inFlight === controller) {
        inFlight = null;
        root.removeAttribute("aria-busy");
      }
    }
  }

  let lastRendered = "";
  function render(reply) {
    const jobs = reply.jobs || [];
    state.nextToken = reply.next_page_token || "";
    const key = JSON.stringify([state.page, state.status, state.type, reply]);
    if (key === lastRendered) return; // unchanged: leave the rows (and any selection) alone
    lastRendered = key;
    fill(
      body,
      jobs.length
        ? jobs.map(row)
        : h("tr", h("td.empty", { colSpan: 9 }, state.status || state.type ? "No jobs match these filters." : "No jobs yet.")),
    );
    newer.disabled = state.page === 0;
    older.disabled = !state.nextToken;
    pageLabel.textContent = `page ${state.page + 1}`;
    const filters = [state.status && `status ${state.status}`, state.type && `type ${state.type}`].filter(Boolean);
    summary.textContent = `${jobs.length} job${jobs.length === 1 ? "" : "s"} on this page, newest first${
      filters.length ? `, ${filters.join(" and ")}` : ""
    }. Refreshes every few seconds.`;
  }

  function row(job) {
    const open = () => navigate(hashFor(["jobs", String(job.job_id)]));
    return h(
      "tr.job-row",
      { dataset: { jobId: job.job_id, status: job.status } },
      h("td.num", h("a", { href: hashFor(["jobs", String(job.job_id)]) }, `#${job.job_id}`)),
      h("td", h("button.link", { type: "button", on: { click: open } }, job.type)),
      h(
        "td",
        statusBadge(job.status),
        job.cancel_requested && job.status === "PROCESSING" ? h("span.muted", " cancelling") : null,
        job.progress && job.status === "PROCESSING" ? h("span.muted", ` ${job.progress.percent} %`) : null,
      ),
      h("td.num", job.priority),
      h("td.num", `${job.attempts}/${job.max_attempts}`),
      h("td", timeCell(job.created_at)),
      h("td", timeCell(job.finished_at)),
      h("td.error", { title: job.error_message || "" }, job.error_message || ""),
      h(
        "td.row-actions",
        CANCELLABLE.has(job.status) && !job.cancel_requested
          ? h("button.small", { type: "button", on: { click: () => act("cancel", job.job_id).then(load) } }, "Cancel")
          : null,
        RETRYABLE.has(job.status)
          ? h("button.small", { type: "button", on: { click: () => act("retry", job.job_id).then(load) } }, "Retry")
          : null,
      ),
    );
  }

  function statsChanged(current) {
    const known = Object.keys((current && current.type_breakdown) || {}).sort();
    const existing = [...typeList.children].map((option) => option.value);
    if (known.join("\n") !== existing.join("\n")) fill(typeList, known.map((type) => h("option", { value: type })));
  }

  statsChanged(stats());
  load();
  return {
    refresh: load,
    statsChanged,
    unmount() {
      if (inFlight) inFlight.abort();
    },
  };
}
