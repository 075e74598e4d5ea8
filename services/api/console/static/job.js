// One job: its fields, a timeline of the known status times, every attempt (GET /jobs/{id}/attempts: its
// executor, duration, outcome and, for a failure, the traceback, collapsed), payload, result, error, and the
// actions. Live through GET /jobs/{id}:watch (newline-delimited JSON) while the job is due or running;
// polled every few seconds otherwise, or when the stream cannot be used.

import { ApiError, api, watchJob } from "./api.js";
import {
  CANCELLABLE,
  FINAL_STATUSES,
  RETRYABLE,
  fill,
  formatDuration,
  formatTime,
  h,
  hashFor,
  jsonBlock,
  relativeTime,
  statusBadge,
} from "./util.js";

export function mountJob(root, { id, act, can, reportError, clearError }) {
  let job = null;
  let watching = null; // the AbortController of the open watch stream
  let watchFailures = 0;
  let gone = false;

  const view = h("div.job-page");
  fill(root, view, h("p.muted", "Loading…"));
  // The attempts panel lives across redraws of the page; it is read again when the job's status or its
  // attempt count changes (each lease and each outcome), not on every update of the job.
  const attemptsPanel = h("section.panel#job-attempts", h("h2", "Attempts"), h("p.muted", "Loading…"));
  const openTracebacks = new Set(); // attempts whose traceback the operator opened: kept open on redraw
  let attemptsKey = "";

  async function loadAttempts(current) {
    const key = `${current.status}|${current.attempts}`;
    if (key === attemptsKey) return;
    attemptsKey = key;
    try {
      const reply = await api.listAttempts(id);
      fill(attemptsPanel, h("h2", "Attempts"), attemptsTable(reply.attempts || [], openTracebacks));
    } catch (error) {
      attemptsKey = ""; // try again on the next update
      if (!(error instanceof ApiError && error.httpStatus === 404)) reportError(error);
    }
  }

  async function load() {
    if (watching || gone) return; // the stream keeps the page current
    try {
      show(await api.getJob(id));
      clearError();
    } catch (error) {
      if (error instanceof ApiError && error.httpStatus === 404) {
        gone = true;
        fill(root, h("h1", `Job #${id}`), h("p.notice.error", "No such job (it may have been pruned)."));
        return;
      }
      reportError(error);
      return;
    }
    if (job && watchable(job) && watchFailures < 3) watch();
  }

  // The stream is for jobs about to change; one waiting for a later time is polled instead, so that no
  // stream is held open for hours.
  function watchable(current) {
    if (current.status === "READY" || current.status === "PROCESSING") return true;
    return current.status === "PENDING" && new Date(current.run_at).getTime() - Date.now() < 60_000;
  }

  function watch() {
    const controller = new AbortController();
    watching = controller;
    root.dataset.live = "watch";
    watchJob(id, show, controller.signal)
      .then(() => {
        watchFailures = 0;
      })
      .catch((error) => {
        if (error.name === "AbortError") return;
        watchFailures += 1; // after three failed streams the page polls instead
        if (error.httpStatus === 401) reportError(error);
      })
      .finally(() => {
        if (watching === controller) {
          watching = null;
          root.dataset.live = "poll";
        }
      });
  }

  function stopWatching() {
    if (watching) {
      watching.abort();
      watching = null;
    }
  }

  async function perform(action) {
    const updated = await act(action, id);
    if (updated) {
      stopWatching();
      show(updated);
      load();
    }
  }

  function show(next) {
    job = next;
    const actions = h(
      "div.actions",
      CANCELLABLE.has(job.status) && can("CancelJob")
        ? h(
            "button.danger#cancel-job",
            { type: "button", disabled: job.cancel_requested, on: { click: () => perform("cancel") } },
            job.cancel_requested ? "Cancel requested…" : "Cancel",
          )
        : null,
      RETRYABLE.has(job.status) && can("RetryJob")
        ? h("button.primary#retry-job", { type: "button", on: { click: () => perform("retry") } }, "Retry")
        : null,
      can("SubmitJob") ? h("a.button", { href: hashFor(["submit"], { from: job.job_id }) }, "Submit a copy") : null,
    );
    const facts = [
      ["type", job.type],
      ["status", statusBadge(job.status)],
      ["priority", `${job.priority} (1 is highest)`],
      ["attempts", `${job.attempts} of ${job.max_attempts}`],
      ["timeout", `${job.timeout_seconds} s per attempt`],
      ["idempotency key", job.idempotency_key || h("span.muted", "none")],
      ["next run at", job.run_at && !FINAL_STATUSES.has(job.status) ? `${formatTime(job.run_at)} (${relativeTime(job.run_at)})` : null],
      ["cancel requested", job.cancel_requested && !FINAL_STATUSES.has(job.status) ? "yes: the executor running it stops it" : null],
      ["updated", `${formatTime(job.updated_at)} (${relativeTime(job.updated_at)})`],
    ];
    // A trace id if the API ever gives one; progress once the handler has reported some.
    if (job.trace_id) facts.push(["trace id", h("code#trace-id", job.trace_id)]);
    if (job.progress !== undefined && job.progress !== null) facts.push(["progress", progress(job.progress)]);
    if (job.depends_on && job.depends_on.length) {
      const links = job.depends_on.map((id) => h("a", { href: hashFor(["jobs", String(id)]) }, `#${id}`));
      const pending = job.status === "WAITING" ? ` (${job.pending_dependencies} not completed yet)` : "";
      facts.push(["depends on", h("span#job-depends-on", ...links.flatMap((link, i) => (i ? [", ", link] : [link])), pending)]);
    }
    if (job.callback) facts.push(["callback", callbackState(job.callback)]);
    if (job.concurrency_key) facts.push(["concurrency key", job.concurrency_key]);
    if (job.unique_key) facts.push(["unique key", job.unique_key]);
    if (job.fairness_key) facts.push(["fairness key", job.fairness_key]);
    if (job.schedule) facts.push(["schedule", job.schedule]);
    fill(
      view,
      h(
        "header.job-header",
        h("h1", `Job #${job.job_id} `, h("span#job-status", statusBadge(job.status))),
        actions,
      ),
      h(
        "div.grid",
        h(
          "section.panel",
          h("h2", "Details"),
          h(
            "dl.facts",
            facts.filter(([, value]) => value !== null && value !== undefined).map(([label, value]) => [h("dt", label), h("dd", value)]),
          ),
        ),
        h("section.panel", h("h2", "Timeline"), timeline(job)),
      ),
      job.error_message ? h("section.panel.error-panel", h("h2", "Error"), h("pre.error#job-error", job.error_message)) : null,
      attemptsPanel,
      h("div.grid", h("section.panel", h("h2", "Payload"), jsonBlock(job.payload, "{}")), h("section.panel#job-result", h("h2", "Result"), jsonBlock(job.result, FINAL_STATUSES.has(job.status) ? "none" : "not yet"))),
      h("p.muted.live-note", FINAL_STATUSES.has(job.status) ? "Finished: nothing more will change unless it is retried." : "Live: updates as the job changes."),
    );
    if (root.firstChild !== view || root.childNodes.length !== 1) fill(root, view);
    loadAttempts(job);
  }

  load();
  return {
    refresh: load,
    unmount: stopWatching,
  };
}

// Job.callback: {url, state, attempts, last_error, delivery_job_id, delivered_at}.
function callbackState(callback) {
  const parts = [h("code", callback.url), ` ${callback.state}`];
  if (callback.attempts) parts.push(`, ${callback.attempts} attempt(s)`);
  if (callback.delivered_at) parts.push(`, delivered ${formatTime(callback.delivered_at)}`);
  if (callback.last_error && callback.state !== "DELIVERED") parts.push(h("div.muted", callback.last_error));
  if (callback.delivery_job_id && callback.delivery_job_id !== "0") {
    parts.push(" ", h("a", { href: hashFor(["jobs", String(callback.delivery_job_id)]) }, `(delivery job #${callback.delivery_job_id})`));
  }
  return h("span#job-callback", ...parts);
}

// Job.progress: {percent, message, updated_at} as the running attempt's handler last reported it.
function progress(value) {
  if (typeof value !== "object") return String(value);
  const percent = Math.max(0, Math.min(100, Number(value.percent || 0)));
  return h(
    "span.progress#job-progress",
    h("progress", { max: 100, value: percent }, `${percent} %`),
    ` ${percent} %`,
    value.message ? h("span", ` · ${value.message}`) : null,
    value.updated_at ? h("span.muted", ` (${relativeTime(value.updated_at)})`) : null,
  );
}

// The known status times in order, with the time spent between them.
function timeline(job) {
  const created = job.created_at;
  const steps = [
    ["created", created, "submitted"],
    ["scheduled", job.scheduled_at, "asked to run no earlier than this"],
    ["started", job.started_at, job.attempts > 1 ? `attempt ${job.attempts} started` : "started running"],
    ["finished", job.finished_at, job.finished_at ? `reached ${job.status}` : ""],
  ].filter(([, when]) => when);
  steps.sort((a, b) => new Date(a[1]) - new Date(b[1]));
  if (!steps.length) return h("p.muted", "No times known.");
  return h(
    "ol.timeline#job-timeline",
    steps.map(([label, when, note], index) => {
      const previous = index > 0 ? steps[index - 1][1] : null;
      const gap = previous ? new Date(when) - new Date(previous) : null;
      return h(
        "li",
        { dataset: { step: label } },
        h("span.step", label),
        h("time", { datetime: when, title: when }, formatTime(when)),
        gap !== null ? h("span.gap", `+${formatDuration(gap)}`) : null,
        note ? h("span.note", note) : null,
      );
    }),
    !job.finished_at ? h("li.pending-step", h("span.step", "…"), h("span.note", waitingFor(job))) : null,
  );
}

function waitingFor(job) {
  switch (job.status) {
    case "PENDING":
      return `waiting until ${formatTime(job.run_at)}`;
    case "READY":
      return "waiting for an executor";
    case "PROCESSING":
      return job.cancel_requested ? "running; cancel requested" : "running";
    default:
      return "";
  }
}

// JobAttempt.outcome -> the badge colour of the job status it resembles.
const OUTCOME_STYLE = {
  RUNNING: "processing",
  COMPLETED: "completed",
  FAILED: "failed",
  TIMED_OUT: "failed",
  CANCELLED: "cancelled",
  LOST: "pending",
};

// Every attempt, oldest first: number, outcome, executor, start, duration, error; a failed attempt's
// traceback in a <details> (collapsed until opened; ``open`` holds the attempts the operator opened).
function attemptsTable(attempts, open) {
  if (!attempts.length) return h("p.muted#attempts-empty", "Not run yet.");
  const rows = [];
  for (const attempt of attempts) {
    const ended = attempt.finished_at ? new Date(attempt.finished_at) : null;
    const started = attempt.started_at ? new Date(attempt.started_at) : null;
    const duration = started && ended ? formatDuration(ended - started) : started ? `running for ${formatDuration(Date.now() - started)}` : "—";
    rows.push(
      h(
        "tr.attempt-row",
        { dataset: { attempt: attempt.attempt, outcome: attempt.outcome } },
        h("td.num", attempt.attempt),
        h("td", h(`span.badge.status-${OUTCOME_STYLE[attempt.outcome] || "pending"}`, attempt.outcome)),
        h("td", h("code.executor", attempt.executor_id || "—")),
        h("td", attempt.started_at ? h("time", { datetime: attempt.started_at, title: attempt.started_at }, formatTime(attempt.started_at)) : "—"),
        h("td.num.duration", duration),
        // error_message already starts with the exception's short name; the full class is the title.
        h("td.error", { title: attempt.error_type || "" }, attempt.error_message || ""),
      ),
    );
    if (attempt.traceback) {
      const details = h(
        "details.traceback",
        { open: open.has(attempt.attempt), on: { toggle: () => (details.open ? open.add(attempt.attempt) : open.delete(attempt.attempt)) } },
        h("summary", `Traceback of attempt ${attempt.attempt}`),
        h("pre.error", attempt.traceback),
      );
      rows.push(h("tr.traceback-row", { dataset: { attempt: attempt.attempt } }, h("td", { colSpan: 6 }, details)));
    }
  }
  return h(
    "div.table-wrap",
    h(
      "table.compact.attempts#attempts-table",
      h("thead", h("tr", h("th.num", "#"), h("th", "outcome"), h("th", "executor"), h("th", "started"), h("th.num", "duration"), h("th", "error"))),
      h("tbody", rows),
    ),
  );
}
