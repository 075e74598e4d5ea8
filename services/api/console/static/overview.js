// The overview: counts by status and type, throughput from successive samples, recent failures.

import { MIN_SPAN_SECONDS, allSamples, buckets, rates } from "./stats.js";
import {
  STATUSES,
  fill,
  formatDuration,
  formatNumber,
  formatRate,
  h,
  hashFor,
  statusBadge,
  timeCell,
} from "./util.js";

const CHART_WINDOW_MS = 5 * 60 * 1000;
const CHART_BUCKET_MS = 10 * 1000;

export function mountOverview(root, { stats, act, can }) {
  const cards = h("section.cards", { "aria-label": "jobs by status" });
  const throughput = h("section.panel#throughput", h("h2", "Throughput"));
  const types = h("section.panel#types", h("h2", "By type"));
  const failures = h("section.panel#failures", h("h2", "Recent failures"));
  fill(root, h("h1", "Overview"), cards, h("div.grid", throughput, types), failures);

  function render(current) {
    if (!current) return;
    const counts = current.status_breakdown || {};
    const total = STATUSES.reduce((sum, status) => sum + Number(counts[status] || 0), 0);
    fill(
      cards,
      STATUSES.map((status) =>
        h(
          "a.card",
          { href: hashFor(["jobs"], { status }), dataset: { status }, title: `list ${status} jobs` },
          h("span.card-label", statusBadge(status)),
          h("span.card-value", { dataset: { count: counts[status] || 0 } }, formatNumber(counts[status])),
        ),
      ),
      h(
        "a.card.card-total",
        { href: hashFor(["jobs"]) },
        h("span.card-label", "all jobs"),
        h("span.card-value", formatNumber(total)),
      ),
    );
    renderThroughput();
    renderTypes(current);
    renderFailures(current);
  }

  function renderThroughput() {
    // Each window as far as the samples reach back: a console opened 20 s ago knows 20 s.
    const rows = [];
    for (const [label, windowMs] of [["last minute", 60_000], ["last 5 minutes", 300_000]]) {
      const rate = rates(windowMs);
      const covered = rate && rate.seconds * 1000 < windowMs - 5000 ? `last ${formatDuration(rate.seconds * 1000)}` : label;
      // A longer window is worth a row only once it reaches well past the shorter one.
      if (!rows.length || (rate && rate.seconds > 90)) rows.push([covered, rate]);
    }
    const table = h(
      "table.compact",
      h("thead", h("tr", h("th", ""), h("th", "finished"), h("th", "completed"), h("th", "failed"), h("th", "cancelled"))),
      h(
        "tbody",
        rows.map(([label, rate]) =>
          h(
            "tr",
            h("th", label),
            ["finished", "COMPLETED", "FAILED", "CANCELLED"].map((key) =>
              h("td.num", { dataset: { rate: key } }, rate ? formatRate(rate[key]) : "—"),
            ),
          ),
        ),
      ),
    );
    const note = rates(60_000)
      ? h("p.muted", `Computed here from ${allSamples().length} samples of /admin/stats, one every few seconds.`)
      : h("p.muted", `Measuring: rates appear once the samples of /admin/stats span ${MIN_SPAN_SECONDS} s.`);
    fill(throughput, h("h2", "Throughput"), table, chart(), note);
  }

  function chart() {
    const data = buckets(CHART_WINDOW_MS, CHART_BUCKET_MS);
    const max = Math.max(1, ...data.map((b) => b.COMPLETED + b.FAILED + b.CANCELLED));
    const width = 300;
    const height = 80;
    const barWidth = width / data.length;
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 ${width} ${height + 1}`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("class", "chart");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "jobs finished per 10 seconds over the last 5 minutes");
    const baseline = document.createElementNS(ns, "line");
    for (const [k, v] of Object.entries({ x1: 0, x2: width, y1: height + 0.5, y2: height + 0.5 })) baseline.setAttribute(k, v);
    baseline.setAttribute("class", "axis");
    svg.append(baseline);
    data.forEach((bucket, i) => {
      let y = height;
      for (const status of ["COMPLETED", "CANCELLED", "FAILED"]) {
        const value = bucket[status];
        if (!value) continue;
        const barHeight = (value / max) * (height - 4);
        const rect = document.createElementNS(ns, "rect");
        rect.setAttribute("x", (i * barWidth + 1).toFixed(1));
        rect.setAttribute("width", Math.max(1, barWidth - 2).toFixed(1));
        rect.setAttribute("y", (y - barHeight).toFixed(1));
        rect.setAttribute("height", barHeight.toFixed(1));
        rect.setAttribute("class", `bar bar-${status.toLowerCase()}`);
        const title = document.createElementNS(ns, "title");
        title.textContent = `${value} ${status} in 10 s`;
        rect.append(title);
        svg.append(rect);
        y -= barHeight;
      }
    });
    return h(
      "figure.chart-box",
      svg,
      h("div.chart-axis", h("span", "5 min ago"), h("span", `peak ${max} per 10 s`), h("span", "now")),
      h(
        "figcaption.legend",
        h("span.swatch.bar-completed"),
        "completed ",
        h("span.swatch.bar-cancelled"),
        "cancelled ",
        h("span.swatch.bar-failed"),
        "failed",
      ),
    );
  }

  function renderTypes(current) {
    const entries = Object.entries(current.type_breakdown || {}).sort((a, b) => Number(b[1]) - Number(a[1]));
    if (!entries.length) {
      fill(types, h("h2", "By type"), h("p.muted", "No jobs yet."));
      return;
    }
    fill(
      types,
      h("h2", "By type"),
      h(
        "table.compact",
        h("thead", h("tr", h("th", "type"), h("th.num", "jobs"))),
        h(
          "tbody",
          entries.map(([type, count]) =>
            h("tr", h("td", h("a", { href: hashFor(["jobs"], { type }) }, type)), h("td.num", formatNumber(count))),
          ),
        ),
      ),
      h(
        "p.muted",
        `Average attempts of failed jobs: ${Number(current.avg_attempts_for_failed_jobs || 0).toFixed(2)}`,
      ),
    );
  }

  function renderFailures(current) {
    const recent = current.recent_failures || [];
    if (!recent.length) {
      fill(failures, h("h2", "Recent failures"), h("p.muted", "No failed jobs."));
      return;
    }
    fill(
      failures,
      h("h2", "Recent failures"),
      h(
        "table.jobs",
        h(
          "thead",
          h("tr", h("th", "job"), h("th", "type"), h("th", "error"), h("th.num", "attempts"), h("th", "failed"), h("th", "")),
        ),
        h(
          "tbody",
          recent.map((failure) =>
            h(
              "tr",
              h("td", h("a", { href: hashFor(["jobs", String(failure.job_id)]) }, `#${failure.job_id}`)),
              h("td", failure.type),
              h("td.error", { title: failure.error }, failure.error),
              h("td.num", failure.attempts),
              h("td", timeCell(failure.failed_at)),
              h(
                "td.row-actions",
                can("RetryJob")
                  ? h("button.small", { type: "button", on: { click: () => act("retry", failure.job_id) } }, "Retry")
                  : null,
              ),
            ),
          ),
        ),
      ),
    );
  }

  render(stats());
  return {
    // The app samples /admin/stats for every view; the overview only draws the latest sample.
    refresh: async () => render(stats()),
    statsChanged: (current) => render(current),
    unmount() {},
  };
}
