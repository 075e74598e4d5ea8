// Executors: GET /executors, the live ones (each refreshes its record with its heartbeat).

import { api } from "./api.js";
import { fill, h, loader, timeCell } from "./util.js";

export function mountExecutors(root, { reportError, clearError }) {
  const body = h("tbody");
  const summary = h("p.muted#executors-summary");
  fill(
    root,
    h("h1", "Executors"),
    h(
      "p.muted",
      "The executors alive now. Each registers at start and refreshes its record with every heartbeat; one that " +
        "stops cleanly leaves at once, one that died leaves within its lease period.",
    ),
    h(
      "div.table-wrap",
      h(
        "table.jobs#executors-table",
        h(
          "thead",
          h(
            "tr",
            h("th", "executor"),
            h("th", "host"),
            h("th.num", "pid"),
            h("th", "version"),
            h("th.num", "running"),
            h("th", "types"),
            h("th", "started"),
            h("th", "last seen"),
          ),
        ),
        body,
      ),
    ),
    summary,
  );

  const reads = loader((signal) => api.listExecutors(signal), (reply) => render(reply.executors || []), {
    reportError,
    clearError,
  });
  const load = reads.load;

  function render(executors) {
    fill(
      body,
      executors.length
        ? executors.map((item) =>
            h(
              "tr.executor-row",
              { dataset: { executorId: item.executor_id, pid: item.pid } },
              h("td", h("code", item.executor_id)),
              h("td", item.host),
              h("td.num", item.pid),
              h("td", item.version),
              h("td.num", `${item.running} / ${item.concurrency}`),
              h("td.types", { title: item.types.join(", ") }, item.types.join(", ")),
              h("td", timeCell(item.started_at)),
              h("td", timeCell(item.last_seen_at)),
            ),
          )
        : h("tr", h("td.empty", { colSpan: 8 }, "No executor is running.")),
    );
    const running = executors.reduce((sum, item) => sum + item.running, 0);
    const slots = executors.reduce((sum, item) => sum + item.concurrency, 0);
    summary.textContent = `${executors.length} executor${executors.length === 1 ? "" : "s"}, ${running} of ${slots} slots busy.`;
  }

  load();
  return {
    refresh: load,
    unmount: reads.abort,
  };
}
