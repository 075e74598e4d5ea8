// Submit a job: POST /jobs with type, payload, priority, scheduled_at, idempotency key and limits.

import { ApiError, api } from "./api.js";
import { describeError, fill, h, hashFor } from "./util.js";

const TYPE_PATTERN = "[a-z0-9_.\\-]{1,128}";

export function mountSubmit(root, { query, navigate, stats, can, caller }) {
  if (!can("SubmitJob")) {
    const role = caller() ? `A token of role ${caller().role.toLowerCase()}` : "This token";
    fill(root, h("h1", "Submit a job"), h("p.muted#submit-not-permitted", `${role} may not submit jobs.`));
    return { unmount() {}, refresh() {} };
  }
  const field = (name, label, input, hint) =>
    h(
      "div.field",
      { dataset: { field: name } },
      h("label", { for: input.id }, label),
      input,
      hint ? h("small.hint", hint) : null,
      h("small.field-error", { id: `${input.id}-error`, role: "alert" }),
    );
  const type = h("input#submit-type", {
    name: "type",
    required: true,
    pattern: TYPE_PATTERN,
    placeholder: "send_email",
    list: "submit-known-types",
    autocomplete: "off",
  });
  const types = h("datalist#submit-known-types", Object.keys((stats() || {}).type_breakdown || {}).sort().map((t) => h("option", { value: t })));
  const payload = h("textarea#submit-payload", { name: "payload", rows: 8, spellcheck: "false" });
  payload.value = "{}";
  const priority = h("input#submit-priority", { name: "priority", type: "number", min: 1, max: 10, placeholder: "5" });
  const scheduledAt = h("input#submit-scheduled-at", { name: "scheduled_at", type: "datetime-local", step: 1 });
  const key = h("input#submit-idempotency-key", { name: "idempotency_key", autocomplete: "off", maxlength: 512 });
  const maxAttempts = h("input#submit-max-attempts", { name: "max_attempts", type: "number", min: 1, max: 100, placeholder: "3" });
  const timeout = h("input#submit-timeout", { name: "timeout_seconds", type: "number", min: 1, placeholder: "server default" });
  const message = h("p.form-message#submit-message", { role: "status" });
  const button = h("button.primary#submit-button", { type: "submit" }, "Submit job");
  const inputs = { type, payload, priority, scheduled_at: scheduledAt, idempotency_key: key, max_attempts: maxAttempts, timeout_seconds: timeout };

  const form = h(
    "form.submit-form#submit-form",
    { novalidate: true, on: { submit: onSubmit } },
    field("type", "Type", type, "the handler's name: a-z 0-9 _ . - (for example echo, sleep, send_email)"),
    types,
    field("payload", "Payload (JSON object)", payload, "given to the handler as it is"),
    h(
      "div.row",
      field("priority", "Priority", priority, "1 (highest) to 10 (lowest); 5 when empty"),
      field("max_attempts", "Max attempts", maxAttempts, "1 to 100; 3 when empty"),
      field("timeout_seconds", "Timeout (s)", timeout, "per attempt"),
    ),
    h(
      "div.row",
      field("scheduled_at", "Scheduled at (your local time)", scheduledAt, "empty: as soon as possible"),
      field("idempotency_key", "Idempotency key", key, "submitting the same key again returns the same job"),
    ),
    h("div.actions", button, message),
  );
  fill(root, h("h1", "Submit a job"), form);

  const from = query.get("from");
  if (from) prefill(from);

  async function prefill(id) {
    try {
      const job = await api.getJob(id);
      type.value = job.type;
      payload.value = JSON.stringify(job.payload || {}, null, 2);
      priority.value = job.priority;
      maxAttempts.value = job.max_attempts;
      message.textContent = `Copied from job #${job.job_id}; the idempotency key is left empty.`;
    } catch (error) {
      message.textContent = describeError(error);
    }
  }

  function clearErrors() {
    for (const element of form.querySelectorAll(".field-error")) element.textContent = "";
    for (const input of Object.values(inputs)) input.removeAttribute("aria-invalid");
    message.textContent = "";
    message.classList.remove("error");
  }

  function fieldError(name, text) {
    const input = inputs[name];
    if (!input) {
      message.textContent = text;
      message.classList.add("error");
      return;
    }
    input.setAttribute("aria-invalid", "true");
    document.getElementById(`${input.id}-error`).textContent = text;
    input.focus();
  }

  function build() {
    const body = { type: type.value.trim() };
    if (!body.type) return fieldError("type", "required");
    if (!new RegExp(`^${TYPE_PATTERN}$`).test(body.type)) return fieldError("type", "1-128 characters of a-z 0-9 _ . -");
    let parsed;
    try {
      parsed = JSON.parse(payload.value.trim() || "{}");
    } catch (error) {
      return fieldError("payload", `not valid JSON: ${error.message}`);
    }
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
      return fieldError("payload", "must be a JSON object, like {\"to\": \"a@example.com\"}");
    }
    body.payload = parsed;
    for (const [name, input] of [["priority", priority], ["max_attempts", maxAttempts], ["timeout_seconds", timeout]]) {
      if (input.value.trim() === "") continue;
      const number = Number(input.value);
      if (!Number.isInteger(number)) return fieldError(name, "must be a whole number");
      body[name] = number;
    }
    if (scheduledAt.value) {
      const when = new Date(scheduledAt.value); // datetime-local is the browser's local time
      if (Number.isNaN(when.getTime())) return fieldError("scheduled_at", "not a valid time");
      body.scheduled_at = when.toISOString();
    }
    if (key.value.trim()) body.idempotency_key = key.value.trim();
    return body;
  }

  async function onSubmit(event) {
    event.preventDefault();
    clearErrors();
    const body = build();
    if (!body) return;
    button.disabled = true;
    message.textContent = "Submitting…";
    try {
      const job = await api.submitJob(body);
      message.textContent = `Job #${job.job_id} submitted.`;
      navigate(hashFor(["jobs", String(job.job_id)]));
    } catch (error) {
      message.textContent = "";
      if (error instanceof ApiError && error.field && inputs[error.field]) fieldError(error.field, error.message);
      else fieldError(null, describeError(error));
    } finally {
      button.disabled = false;
    }
  }

  return { refresh: async () => {}, unmount() {} };
}
