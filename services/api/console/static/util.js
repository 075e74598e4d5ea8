// Small DOM and formatting helpers shared by the console's views and the docs page.

// h("div.card#id", {attrs, on: {click}}, ...children): an element; strings become text nodes.
export function h(spec, props, ...children) {
  if (props === null || typeof props !== "object" || props instanceof Node || Array.isArray(props)) {
    if (props !== undefined && props !== null) children.unshift(props);
    props = {};
  }
  const [, tag = "div", rest = ""] = spec.match(/^([a-z0-9-]*)(.*)$/i);
  const element = document.createElement(tag || "div");
  for (const part of rest.match(/[.#][^.#]+/g) || []) {
    if (part[0] === ".") element.classList.add(part.slice(1));
    else element.id = part.slice(1);
  }
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "on") {
      for (const [event, handler] of Object.entries(value)) element.addEventListener(event, handler);
    } else if (key === "dataset") {
      Object.assign(element.dataset, value);
    } else if (key in element && typeof value !== "string") {
      element[key] = value;
    } else {
      element.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

// Replaces the children of element.
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

export const STATUSES = ["PENDING", "READY", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED", "WAITING"];
export const FINAL_STATUSES = new Set(["COMPLETED", "FAILED", "CANCELLED"]);
export const CANCELLABLE = new Set(["WAITING", "PENDING", "READY", "PROCESSING"]);
export const RETRYABLE = new Set(["FAILED", "CANCELLED"]);

export function statusBadge(status) {
  return h(`span.badge.status-${String(status).toLowerCase()}`, { dataset: { status } }, status);
}

export function formatTime(value) {
  if (!value) return "—";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toLocaleString(undefined, {
    year: "numeric",
    month: "short",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  });
}

export function formatDuration(milliseconds) {
  if (milliseconds === null || milliseconds === undefined || Number.isNaN(milliseconds)) return "";
  const negative = milliseconds < 0;
  let ms = Math.abs(milliseconds);
  let text;
  if (ms < 1000) text = `${Math.round(ms)} ms`;
  else if (ms < 60_000) text = `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  else if (ms < 3_600_000) text = `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
  else if (ms < 86_400_000) text = `${Math.floor(ms / 3_600_000)} h ${Math.round((ms % 3_600_000) / 60_000)} min`;
  else text = `${Math.floor(ms / 86_400_000)} d ${Math.round((ms % 86_400_000) / 3_600_000)} h`;
  return negative ? `-${text}` : text;
}

// "3 s ago", "in 2 min"
export function relativeTime(value, now = Date.now()) {
  if (!value) return "";
  const delta = new Date(value).getTime() - now;
  if (Number.isNaN(delta)) return "";
  if (Math.abs(delta) < 1000) return "now";
  return delta < 0 ? `${formatDuration(-delta)} ago` : `in ${formatDuration(delta)}`;
}

export function timeCell(value) {
  if (!value) return h("span.muted", "—");
  return h("time.relative", { datetime: value, title: `${formatTime(value)} (${value})` }, relativeTime(value));
}

export function formatNumber(value) {
  return Number(value || 0).toLocaleString();
}

export function formatRate(perSecond) {
  if (perSecond === null || perSecond === undefined) return "—";
  if (perSecond >= 100) return `${Math.round(perSecond).toLocaleString()}/s`;
  if (perSecond >= 1) return `${perSecond.toFixed(1)}/s`;
  if (perSecond > 0) return `${(perSecond * 60).toFixed(1)}/min`;
  return "0/s";
}

export function jsonBlock(value, emptyText = "none") {
  if (value === null || value === undefined) return h("p.muted", emptyText);
  return h("pre.json", JSON.stringify(value, null, 2));
}

// Parses "#/jobs/12?status=FAILED" into {path: ["jobs", "12"], query: URLSearchParams}.
export function parseHash(hash) {
  const raw = (hash || "").replace(/^#/, "");
  const [pathPart, queryPart = ""] = raw.split("?");
  const path = pathPart.split("/").filter(Boolean).map(decodeURIComponent);
  return { path, query: new URLSearchParams(queryPart) };
}

export function hashFor(path, query = {}) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
  }
  const text = params.toString();
  return `#/${path.map(encodeURIComponent).join("/")}${text ? `?${text}` : ""}`;
}

export function describeError(error) {
  if (!error) return "";
  if (error.status && error.httpStatus !== undefined) {
    const where = error.field ? ` (field: ${error.field})` : "";
    return `${error.status}: ${error.message}${where}`;
  }
  return String(error.message || error);
}

// Brings every relative time ("3 s ago") under root up to date without redrawing anything else.
export function refreshRelativeTimes(root) {
  const now = Date.now();
  for (const element of root.querySelectorAll("time.relative[datetime]")) {
    element.textContent = relativeTime(element.getAttribute("datetime"), now);
  }
}

// ---- changes: every change the console makes asks first ------------------------------------------------

// Asks the operator to confirm a change in a modal dialog; resolves true only for the "yes" button.
// Its elements are #{id}-dialog, -title, -text (the detail), -yes and -no.
export function confirmChange(title, detail, { id = "confirm", yes = "Confirm", no = "Cancel", danger = false } = {}) {
  return new Promise((resolve) => {
    const yesButton = h(`button.${danger ? "danger" : "primary"}#${id}-yes`, { type: "submit", value: "yes" }, yes);
    const noButton = h(`button#${id}-no`, { type: "submit", value: "no" }, no);
    const dialog = h(
      `dialog#${id}-dialog`,
      { "aria-labelledby": `${id}-title` },
      h(
        "form",
        { method: "dialog" },
        h(`h2#${id}-title`, title),
        detail ? h(`p.muted#${id}-text`, detail) : null,
        h("div.actions", yesButton, noButton),
      ),
    );
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue === "yes");
    });
    document.body.append(dialog);
    dialog.showModal();
    noButton.focus();
  });
}

// A form in a modal dialog: fields [{name, label, value, hint, multiline}], save(values) returns a promise.
// Saving asks for confirmation (confirmText(values)); an error from the API stays in the dialog, on its
// field when it names one, and the dialog stays open; success closes it.
export function formDialog({ id, title, fields, saveLabel = "Save", confirmText, save, extra = [] }) {
  const inputs = {};
  const errors = {};
  const message = h(`p.form-message#${id}-message`, { role: "alert" });
  const form = h(
    "form",
    { method: "dialog" },
    h("h2", title),
    fields.map((field) => {
      const inputId = `${id}-${field.name.replaceAll("_", "-")}`;
      inputs[field.name] = field.multiline
        ? h(`textarea#${inputId}`, { name: field.name, rows: 8, spellcheck: "false" })
        : h(`input#${inputId}`, { name: field.name, autocomplete: "off", spellcheck: "false" });
      inputs[field.name].value = field.value ?? "";
      errors[field.name] = h(`div.field-error#${inputId}-error`);
      return h(
        "div.field",
        h("label", { htmlFor: inputId }, field.label),
        inputs[field.name],
        field.hint ? h("span.hint", field.hint) : null,
        errors[field.name],
      );
    }),
    message,
    h(
      "div.actions",
      h(`button.primary#${id}-save`, { type: "submit", value: "save" }, saveLabel),
      extra,
      h("button", { type: "submit", value: "cancel", formNoValidate: true }, "Cancel"),
    ),
  );
  const dialog = h(`dialog.form-dialog#${id}`, form);
  form.addEventListener("submit", async (event) => {
    const action = event.submitter ? event.submitter.value : "save";
    if (action !== "save") return; // the dialog closes by itself
    event.preventDefault();
    const values = Object.fromEntries(Object.entries(inputs).map(([name, input]) => [name, input.value.trim()]));
    for (const error of Object.values(errors)) error.textContent = "";
    message.textContent = "";
    message.classList.remove("error");
    if (!(await confirmChange(confirmText(values)))) return;
    try {
      await save(values);
      dialog.close();
    } catch (error) {
      const target = error.field && Object.keys(errors).find((name) => error.field === name || error.field.endsWith(`.${name}`));
      if (target) errors[target].textContent = error.message;
      message.textContent = describeError(error);
      message.classList.add("error");
    }
  });
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  return dialog;
}

// Keyset pages of a List* call ({page_size, page_token} in, next_page_token out), for a view's pager.
export function pager(load) {
  const state = { tokens: [""], page: 0, nextToken: "" };
  const newer = h("button.page-newer", { type: "button", on: { click: () => go(state.page - 1) } }, "← Previous");
  const older = h("button.page-older", { type: "button", on: { click: () => go(state.page + 1) } }, "Next →");
  const label = h("span.page-label");
  function go(page) {
    if (page < 0 || (page > state.page && !state.nextToken)) return;
    if (page > state.page) state.tokens[page] = state.nextToken;
    state.page = page;
    load();
  }
  return {
    element: h("nav.pager", newer, label, older),
    token: () => state.tokens[state.page],
    // After each page: remember where the next one starts.
    loaded(reply) {
      state.nextToken = reply.next_page_token || "";
      newer.disabled = state.page === 0;
      older.disabled = !state.nextToken;
      label.textContent = `page ${state.page + 1}`;
    },
  };
}

// A view's reads, one at a time: a newer load aborts the one still running. Each reply goes to show();
// a failure to reportError, a success clears the error notice.
export function loader(fetchReply, show, { reportError, clearError }) {
  let inFlight = null;
  async function load() {
    if (inFlight) inFlight.abort();
    const controller = new AbortController();
    inFlight = controller;
    try {
      const reply = await fetchReply(controller.signal);
      if (controller.signal.aborted) return;
      show(reply);
      clearError();
    } catch (error) {
      if (error.name !== "AbortError") reportError(error);
    } finally {
      if (inFlight === controller) inFlight = null;
    }
  }
  return {
    load,
    abort() {
      if (inFlight) inFlight.abort();
    },
  };
}
