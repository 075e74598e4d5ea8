// Schedules: GET /schedules with next and last run, and pause, resume, trigger now and edit (PATCH with an
// update_mask of the fields that changed). Every change asks for confirmation; API errors are shown.

import { api } from "./api.js";
import { confirmChange, fill, formDialog, h, hashFor, loader, pager, timeCell } from "./util.js";

// The RPCs behind the buttons: a token whose role may not call one does not see its button.
const ACTIONS = ["PauseSchedule", "ResumeSchedule", "TriggerSchedule", "UpdateSchedule"];

export function mountSchedules(root, { can, reportError, clearError, announce }) {
  const pages = pager(() => load());
  const body = h("tbody");
  fill(
    root,
    h("h1", "Schedules"),
    h(
      "p.muted",
      "Cron schedules the scheduler turns into jobs. A paused schedule submits nothing; on resume, what it missed " +
        "fires once, for the latest occurrence. Trigger now submits one job at once, paused or not.",
    ),
    h(
      "div.table-wrap",
      h(
        "table.jobs#schedules-table",
        h(
          "thead",
          h(
            "tr",
            h("th", "name"),
            h("th", "cron"),
            h("th", "job type"),
            h("th", "state"),
            h("th", "next run"),
            h("th", "last run"),
            h("th", ""),
          ),
        ),
        body,
      ),
    ),
    pages.element,
  );

  const reads = loader(
    (signal) => api.listSchedules({ page_size: 50, page_token: pages.token() }, signal),
    (reply) => {
      pages.loaded(reply);
      render(reply.schedules || []);
    },
    { reportError, clearError },
  );
  const load = reads.load;

  let lastRendered = "";
  function render(schedules) {
    // What the token may do is part of what is shown (the buttons).
    const key = JSON.stringify([schedules, ...ACTIONS.map((method) => can(method))]);
    if (key === lastRendered) return;
    lastRendered = key;
    fill(body, schedules.length ? schedules.map(row) : h("tr", h("td.empty", { colSpan: 7 }, "No schedules yet.")));
  }

  function row(schedule) {
    const button = (label, onClick) => h("button.small", { type: "button", on: { click: onClick } }, label);
    return h(
      "tr.schedule-row",
      { dataset: { name: schedule.name, paused: String(schedule.paused) } },
      h("td", schedule.name),
      h("td", h("code", schedule.cron), " ", h("span.muted", schedule.time_zone || "UTC")),
      h("td", schedule.job ? schedule.job.type : ""),
      h("td", schedule.paused ? h("span.badge.status-failed", "paused") : h("span.badge.status-completed", "active")),
      h("td.next-run", schedule.paused ? h("span.muted", "paused") : timeCell(schedule.next_run_at)),
      h(
        "td.last-run",
        timeCell(schedule.last_run_at),
        schedule.last_job_id ? [" ", h("a", { href: hashFor(["jobs", String(schedule.last_job_id)]) }, `#${schedule.last_job_id}`)] : null,
      ),
      h(
        "td.row-actions",
        schedule.paused
          ? can("ResumeSchedule") && button("Resume", () => change(schedule, "resume"))
          : can("PauseSchedule") && button("Pause", () => change(schedule, "pause")),
        can("TriggerSchedule") && button("Trigger now", () => trigger(schedule)),
        can("UpdateSchedule") && button("Edit…", () => edit(schedule)),
      ),
    );
  }

  async function change(schedule, action) {
    const question =
      action === "pause"
        ? [`Pause schedule ${schedule.name}?`, "It submits nothing until resumed."]
        : [`Resume schedule ${schedule.name}?`, "If occurrences came due while it was paused, the latest fires once."];
    if (!(await confirmChange(...question))) return;
    try {
      if (action === "pause") await api.pauseSchedule(schedule.name);
      else await api.resumeSchedule(schedule.name);
      announce(`Schedule ${schedule.name} ${action === "pause" ? "paused" : "resumed"}.`);
      await load();
    } catch (error) {
      reportError(error);
    }
  }

  async function trigger(schedule) {
    if (!(await confirmChange(`Run schedule ${schedule.name} now?`, `One ${schedule.job.type} job is submitted at once.`))) return;
    try {
      const job = await api.triggerSchedule(schedule.name);
      announce(`Schedule ${schedule.name} triggered: job #${job.job_id} (${job.status}).`);
      await load();
    } catch (error) {
      reportError(error);
    }
  }

  function edit(schedule) {
    const job = JSON.stringify(withoutNulls(schedule.job || {}), null, 2);
    formDialog({
      id: "schedule-dialog",
      title: `Edit schedule ${schedule.name}`,
      fields: [
        { name: "cron", label: "Cron", value: schedule.cron, hint: "five fields, six with seconds, or @daily..." },
        { name: "time_zone", label: "Time zone", value: schedule.time_zone || "UTC", hint: "an IANA name" },
        { name: "job", label: "Job", value: job, multiline: true, hint: "the job each occurrence submits (JSON)" },
      ],
      confirmText: (values) => `Change ${changedFields(schedule, job, values).join(", ") || "nothing"} of ${schedule.name}?`,
      save: async (values) => {
        const changed = changedFields(schedule, job, values);
        if (!changed.length) throw { message: "nothing changed", field: null };
        const body = { schedule: {}, update_mask: changed.map(camel).join(",") };
        for (const name of changed) {
          if (name !== "job") body.schedule[name] = values[name];
          else {
            try {
              body.schedule.job = JSON.parse(values.job);
            } catch (error) {
              throw { message: `not valid JSON: ${error.message}`, field: "job" };
            }
          }
        }
        await api.updateSchedule(schedule.name, body);
        announce(`Schedule ${schedule.name} updated.`);
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

function changedFields(schedule, job, values) {
  const changed = [];
  if (values.cron !== schedule.cron) changed.push("cron");
  if (values.time_zone !== (schedule.time_zone || "UTC")) changed.push("time_zone");
  if (values.job !== job.trim()) changed.push("job");
  return changed;
}

// update_mask in JSON is written in lowerCamelCase (protobuf's JSON form of a FieldMask).
function camel(path) {
  return path.replace(/_([a-z])/g, (_, letter) => letter.toUpperCase());
}

// The template as the API shows it, without the fields it leaves empty (null, or an empty list).
function withoutNulls(value) {
  const empty = (item) => item === null || item === undefined || (Array.isArray(item) && !item.length);
  return Object.fromEntries(Object.entries(value).filter(([, item]) => !empty(item)));
}
