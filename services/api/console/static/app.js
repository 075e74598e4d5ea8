// The console's shell: navigation, the token prompt, the refresh loop and the views by address.
//   #/            overview          #/jobs?status=&type=   jobs table
//   #/jobs/{id}   one job           #/submit[?from={id}]   submit form
//   #/types       job types         #/executors            live executors
//   #/schedules   cron schedules

import { ApiError, api, getToken, onUnauthorized, setToken } from "./api.js";
import { mountExecutors } from "./executors.js";
import { mountJob } from "./job.js";
import { mountJobs } from "./jobs.js";
import { mountOverview } from "./overview.js";
import { mountSchedules } from "./schedules.js";
import { record } from "./stats.js";
import { mountSubmit } from "./submit.js";
import { mountTypes } from "./types.js";
import { describeError, fill, h, parseHash, refreshRelativeTimes } from "./util.js";

const REFRESH_MS = 2000;
const LIVE_KEY = "jobs-console.live";

const main = document.getElementById("view");
const notice = document.getElementById("notice");
const liveToggle = document.getElementById("live");
const tokenButton = document.getElementById("token-button");
const dialog = document.getElementById("token-dialog");
const tokenForm = document.getElementById("token-form");
const tokenInput = document.getElementById("token-input");
const tokenMessage = document.getElementById("token-message");
const lastUpdate = document.getElementById("last-update");

let view = null;
let latestStats = null;
let statsFailing = false;
let tokenDismissed = false; // the operator closed the prompt: say so in the notice instead of reopening it
// GET /caller: the token's role and the RPCs it may call. Until the server has said, the console offers
// nothing that changes jobs; the server refuses what a role may not do whatever the console shows.
let caller = null;
const submitLink = document.querySelector('nav.main a[data-section="submit"]');

// ---- notices ------------------------------------------------------------------------------------------

function reportError(error) {
  if (error instanceof ApiError && error.httpStatus === 401) {
    askForToken(error);
    return;
  }
  notice.hidden = false;
  notice.className = "notice error";
  notice.textContent = describeError(error);
}

function clearError() {
  if (notice.classList.contains("error")) {
    notice.hidden = true;
    notice.textContent = "";
  }
}

function announce(text) {
  notice.hidden = false;
  notice.className = "notice info";
  notice.textContent = text;
  setTimeout(() => {
    if (notice.textContent === text) notice.hidden = true;
  }, 4000);
}

// ---- token --------------------------------------------------------------------------------------------

function renderTokenButton() {
  const role = caller && caller.authentication_enabled ? caller.role.toLowerCase() : null;
  tokenButton.textContent = role ? `Token: ${role}` : getToken() ? "Token: set" : "Token";
  tokenButton.title = getToken()
    ? `a bearer token${role ? ` of role ${role}` : ""} is sent with every call; click to change or forget it`
    : "set an API token";
}

function can(method) {
  return caller !== null && caller.permitted_methods.includes(method);
}

// Asks the server who this token is, then shows the views again with only what its role may do.
async function refreshCaller() {
  try {
    caller = await api.caller();
  } catch (error) {
    caller = null;
    reportError(error);
  }
  renderTokenButton();
  submitLink.hidden = !can("SubmitJob");
  route();
}

function askForToken(error) {
  if (dialog.open) return;
  if (error && tokenDismissed) {
    notice.hidden = false;
    notice.className = "notice error";
    notice.textContent = "UNAUTHENTICATED: this server needs an API token. Use the Token button to enter one.";
    return;
  }
  tokenMessage.textContent = error
    ? getToken()
      ? "The server refused this token. Enter another one."
      : "This server needs an API token (one of its API_TOKENS)."
    : "The token is kept for this browser tab only (sessionStorage) and sent as Authorization: Bearer.";
  tokenInput.value = "";
  dialog.showModal();
  tokenInput.focus();
}

onUnauthorized((error) => askForToken(error));
tokenButton.addEventListener("click", () => {
  tokenDismissed = false;
  askForToken(null);
});
tokenForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const action = event.submitter ? event.submitter.value : "save";
  if (action === "forget") setToken("");
  else if (action === "save" && tokenInput.value.trim()) setToken(tokenInput.value);
  tokenDismissed = action === "cancel";
  dialog.close();
  renderTokenButton();
  if (action !== "cancel") {
    refreshCaller();
    tick(true);
  }
});

// ---- actions ------------------------------------------------------------------------------------------

async function act(action, id) {
  try {
    const job = action === "cancel" ? await api.cancelJob(id) : await api.retryJob(id);
    const what =
      action === "cancel"
        ? job.status === "CANCELLED"
          ? "cancelled"
          : "cancel requested (the executor stops it)"
        : `re-queued as ${job.status}`;
    announce(`Job #${id} ${what}.`);
    refreshStats();
    return job;
  } catch (error) {
    reportError(error);
    return null;
  }
}

function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

// ---- routing ------------------------------------------------------------------------------------------

function route() {
  if (view) view.unmount();
  clearError();
  const { path, query } = parseHash(location.hash);
  const context = { query, stats: () => latestStats, act, announce, can, caller: () => caller, navigate, reportError, clearError };
  for (const link of document.querySelectorAll("nav.main a")) {
    link.classList.toggle("active", link.dataset.section === (path[0] || "overview"));
  }
  if (path[0] === "jobs" && path[1]) {
    document.title = `Job #${path[1]} · Jobs console`;
    view = mountJob(main, { ...context, id: path[1] });
  } else if (path[0] === "jobs") {
    document.title = "Jobs · Jobs console";
    view = mountJobs(main, context);
  } else if (path[0] === "submit") {
    document.title = "Submit · Jobs console";
    view = mountSubmit(main, context);
  } else if (path[0] === "types") {
    document.title = "Job types · Jobs console";
    view = mountTypes(main, context);
  } else if (path[0] === "executors") {
    document.title = "Executors · Jobs console";
    view = mountExecutors(main, context);
  } else if (path[0] === "schedules") {
    document.title = "Schedules · Jobs console";
    view = mountSchedules(main, context);
  } else {
    document.title = "Overview · Jobs console";
    view = mountOverview(main, context);
  }
  main.focus({ preventScroll: true });
}

// ---- refresh loop -------------------------------------------------------------------------------------

async function refreshStats() {
  try {
    latestStats = await api.stats();
    record(latestStats);
    statsFailing = false;
    clearError();
    if (view && view.statsChanged) view.statsChanged(latestStats);
  } catch (error) {
    if (!statsFailing || (error instanceof ApiError && error.httpStatus === 401)) reportError(error);
    statsFailing = true;
  }
}

let ticking = false;
async function tick(force = false) {
  if (ticking) return;
  if (!force && (!liveToggle.checked || document.visibilityState !== "visible" || dialog.open)) return;
  ticking = true;
  try {
    // One cheap GetStats (O(types x statuses)) per tick, however many jobs there are.
    await refreshStats();
    if (view) await view.refresh();
    refreshRelativeTimes(main);
    lastUpdate.textContent = `updated ${new Date().toLocaleTimeString()}`;
  } finally {
    ticking = false;
  }
}

liveToggle.checked = sessionStorage.getItem(LIVE_KEY) !== "off";
liveToggle.addEventListener("change", () => {
  sessionStorage.setItem(LIVE_KEY, liveToggle.checked ? "on" : "off");
  if (liveToggle.checked) tick(true);
});
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") tick();
});
window.addEventListener("hashchange", route);
// A click on the section already shown starts it afresh (a clean form, the first page).
document.querySelector("nav.main").addEventListener("click", (event) => {
  const link = event.target.closest("a[data-section]");
  if (link && link.getAttribute("href") === location.hash) route();
});

renderTokenButton();
submitLink.hidden = true;
route();
refreshCaller();
refreshStats().then(() => {
  if (view && view.statsChanged) view.statsChanged(latestStats);
});
setInterval(tick, REFRESH_MS);
