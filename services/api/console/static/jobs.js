// The jobs table: GET /jobs newest first, filtered by status, type and the search filters (keys, schedule,
// creation time), paged with next_page_token (keyset paging: every page costs the same however deep, and
// nothing is counted). "Cancel all matching" and "Retry all matching" act on every job of the filter
// (POST /jobs:cancel, /jobs:retry) after a confirmation that shows how many jobs that is.

import { api } from "./api.js";
import {
  CANCELLABLE,
  RETRYABLE,
  STATUSES,
  confirmChange,
  fill,
  formatTime,
  h,
  hashFor,
  statusBadge,
  timeCell,
} from "./util.js";

const PAGE_SIZES = [20, 50, 100, 200];
// The search filters beyond status and type: [query parameter, label, input type, placeholder].
const SEARCH_FILTERS = [
  ["idempotency_key", "Idempotency key", "search", "exact key"],
  ["unique_key", "Unique key", "search", "exact key"],
  ["concurrency_key", "Concurrency key", "search", "exact key"],
  ["fairness_key", "Fairness key", "search", "exact key"],
  ["schedule", "Schedule", "search", "schedule name"],
  ["created_after", "Created after", "datetime-local", ""],
  ["created_before", "Created before", "datetime-local", ""],
];
const TIME_FILTERS = new Set(["created_after", "created_before"]);
// The statuses each bulk action applies to (as CancelJob and RetryJob).
const BULK = {
  cancel: { label: "Cancel all matching", verb: "Cancel", done: "cancelled", statuses: CANCELLABLE, method: "CancelJobs" },
  retry: { label: "Retry all matching", verb: "Retry", done: "re-queued", statuses: RETRYABLE, method: "RetryJobs" },
};

export function mountJobs(root, { query, stats, act, announce, can, navigate, reportError, clearError }) {
  const state = {
    status: STATUSES.includes(query.get("status")) ? query.get("status") : "",
    type: query.get("type") || "",
    search: Object.fromEntries(SEARCH_FILTERS.map(([name]) => [name, query.get(name) || ""])),
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

  // The search filters, in a disclosure that starts open when one of them is set. Times are typed in local
  // time and sent as RFC 3339 UTC; the address keeps what the API was sent.
  const searchInputs = {};
  for (const [name, label, type, placeholder] of SEARCH_FILTERS) {
    const id = `filter-${name.replaceAll("_", "-")}`;
    const input = h(`input#${id}`, { name, type, placeholder, autocomplete: "off", step: type === "datetime-local" ? 1 : null });
    input.value = TIME_FILTERS.has(name) ? localInput(state.search[name]) : state.search[name];
    input.addEventListener("change", () => setFilter({ search: { ...state.search, [name]: searchValue(name, input.value) } }));
    searchInputs[name] = h("label", `${label} `, input);
  }
  const more = h(
    "details.more-filters#more-filters",
    { open: SEARCH_FILTERS.some(([name]) => state.search[name]) },
    h("summary", "More filters"),
    h("div.filters", Object.values(searchInputs)),
  );

  // Bulk actions on every job the filter selects: count (validate_only), confirm, act.
  const bulkButtons = Object.entries(BULK).map(([action, { label }]) =>
    h(`button#bulk-${action}`, { type: "button", on: { click: () => confirmBulk(action) } }, label),
  );
  const bulkHint = h("span.muted.bulk-hint");

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
              for (const label of Object.values(searchInputs)) label.querySelector("input").value = "";
              setFilter({ status: "", type: "", search: Object.fromEntries(SEARCH_FILTERS.map(([name]) => [name, ""])) });
            },
          },
        },
        "Clear",
      ),
      more,
    ),
    h("div.bulk-actions", bulkButtons, bulkHint),
    h("div.table-wrap", table),
    h("nav.pager", newer, pageLabel, older),
    summary,
  );

  // The filter as GET /jobs and the bulk actions take it (unset fields left out).
  function filter() {
    const given = { status: state.status, type: state.type, ...state.search };
    return Object.fromEntries(Object.entries(given).filter(([, value]) => value));
  }

  function setFilter(change) {
    Object.assign(state, change, { tokens: [""], page: 0, nextToken: "" });
    // Keep the address bookmarkable without adding a history entry per keystroke.
    const hash = hashFor(["jobs"], { ...filter(), page_size: state.pageSize === 50 ? "" : state.pageSize });
    history.replaceState(null, "", hash);
    renderBulk();
    load();
  }

  // An empty filter would select every job: the server refuses it, and the buttons say so first. A status
  // the action does not apply to disables it too; a token whose role may not make the call hides it.
  // While a bulk call runs (it answers once every job is done) the buttons wait and the hint says so.
  let running = "";
  function renderBulk() {
    const empty = Object.keys(filter()).length === 0;
    for (const [index, action] of Object.keys(BULK).entries()) {
      const applies = !state.status || BULK[action].statuses.has(state.status);
      bulkButtons[index].disabled = Boolean(running) || empty || !applies;
      bulkButtons[index].hidden = !can(BULK[action].method);
    }
    bulkHint.textContent = running || (empty ? "Set a filter to act on all matching jobs." : "");
  }

  async function confirmBulk(action) {
    const { verb, done } = BULK[action];
    const selected = filter();
    let count;
    try {
      count = Number((await api.bulk(action, selected, true)).count || 0);
    } catch (error) {
      reportError(error);
      return;
    }
    if (!count) {
      announce(`No matching jobs to ${verb.toLowerCase()}.`);
      return;
    }
    const jobs = `${count.toLocaleString()} job${count === 1 ? "" : "s"}`;
    const question = `${verb} ${jobs} matching ${describe(selected)}?`;
    const options = { id: "bulk", yes: `${verb} ${jobs}`, no: "Keep them", danger: true };
    if (!(await confirmChange(`${verb} every matching job?`, question, options))) return;
    running = `${verb === "Cancel" ? "Cancelling" : "Retrying"} ${count.toLocaleString()} jobs…`;
    renderBulk();
    try {
      const changed = Number((await api.bulk(action, selected)).count || 0);
      announce(`${changed.toLocaleString()} job${changed === 1 ? "" : "s"} ${done}.`);
    } catch (error) {
      reportError(error);
    } finally {
      running = "";
      renderBulk();
      load();
    }
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
        { ...filter(), page_size: state.pageSize, page_token: state.tokens[state.page] },
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
    const key = JSON.stringify([state.page, filter(), reply]);
    if (key === lastRendered) return; // unchanged: leave the rows (and any selection) alone
    lastRendered = key;
    fill(
      body,
      jobs.length
        ? jobs.map(row)
        : h("tr", h("td.empty", { colSpan: 9 }, Object.keys(filter()).length ? "No jobs match these filters." : "No jobs yet.")),
    );
    renderBulk();
    newer.disabled = state.page === 0;
    older.disabled = !state.nextToken;
    pageLabel.textContent = `page ${state.page + 1}`;
    const selected = filter();
    const byTime = selected.created_after || selected.created_before;
    summary.textContent = `${jobs.length} job${jobs.length === 1 ? "" : "s"} on this page, newest first${
      byTime ? " by creation time" : ""
    }${Object.keys(selected).length ? `, ${describe(selected)}` : ""}. Refreshes every few seconds.`;
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
        CANCELLABLE.has(job.status) && !job.cancel_requested && can("CancelJob")
          ? h("button.small", { type: "button", on: { click: () => act("cancel", job.job_id).then(load) } }, "Cancel")
          : null,
        RETRYABLE.has(job.status) && can("RetryJob")
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
  renderBulk();
  load();
  return {
    refresh: load,
    statsChanged,
    unmount() {
      if (inFlight) inFlight.abort();
    },
  };
}

// "status READY and type email": a filter as the summary and the confirmation show it.
function describe(selected) {
  return Object.entries(selected)
    .map(([name, value]) => `${name.replaceAll("_", " ")} ${TIME_FILTERS.has(name) ? formatTime(value) : value}`)
    .join(" and ");
}

// A datetime-local input's value (local time, no zone) as RFC 3339 UTC; other filters as typed.
function searchValue(name, value) {
  const text = value.trim();
  if (!text || !TIME_FILTERS.has(name)) return text;
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? text : date.toISOString();
}

// The other way: an RFC 3339 time as a datetime-local input shows it (local time, to the second).
function localInput(value) {
  if (!value) return "";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return "";
  const local = new Date(date.getTime() - date.getTimezoneOffset() * 60_000);
  return local.toISOString().slice(0, 19);
}
