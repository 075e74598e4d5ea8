// The console's shell: navigation, the token prompt, the refresh loop and the views by address.
//   #/            overview          #/jobs?status=&type=   jobs table
//   #/jobs/{id}   one job           #/submit[?from={id}]   submit form

import { ApiError, api, getToken, onUnauthorized, setToken } from "./api.js";
import { mountJob } from "./job.js";
import { mountJobs } from "./jobs.js";
import { mountOverview } from "./overview.js";
import { record } from "./stats.js";
import { mountSubmit } from "./submit.js";
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
  tokenButton.textContent = getToken() ? "Token: set" : "Token";
  tokenButton.title = getToken() ? "a bearer token is sent with every call; click to change or forget it" : "set an API token";
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
  if (action !== "cancel") tick(true);
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
  const context = { query, stats: () => latestStats, act, navigate, reportError, clearError };
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
route();
refreshStats().then(() => {
  if (view && view.statsChanged) view.statsChanged(latestStats);
});
setInterval(tick, REFRESH_MS);
