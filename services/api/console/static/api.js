// The REST API of this server, with the operator's bearer token when one is set.
// Errors come back as ApiError with the shim's {code, status, message, details}.

const TOKEN_KEY = "jobs-console.token";
const listeners = new Set();

export class ApiError extends Error {
  constructor(httpStatus, body) {
    const message = (body && body.message) || `HTTP ${httpStatus}`;
    super(message);
    this.httpStatus = httpStatus;
    this.status = (body && body.status) || "UNKNOWN";
    this.details = (body && body.details) || [];
  }

  // The field a 400 names (google.rpc.BadRequest), if any.
  get field() {
    for (const detail of this.details) {
      const violations = detail.fieldViolations || detail.field_violations;
      if (violations && violations.length) return violations[0].field;
    }
    return null;
  }
}

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token.trim());
  else sessionStorage.removeItem(TOKEN_KEY);
}

// Called with the ApiError of every 401, so that the page can ask for a token.
export function onUnauthorized(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function authHeaders(extra = {}) {
  const token = getToken();
  return token ? { ...extra, Authorization: `Bearer ${token}` } : { ...extra };
}

async function failure(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = { message: `HTTP ${response.status} ${response.statusText}` };
  }
  const error = new ApiError(response.status, body);
  if (response.status === 401) for (const listener of listeners) listener(error);
  return error;
}

export async function request(method, path, { query, body, signal } = {}) {
  let url = path;
  if (query) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
    }
    const text = params.toString();
    if (text) url += `?${text}`;
  }
  const init = { method, headers: authHeaders({ Accept: "application/json" }), signal, cache: "no-store" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, { status: "UNAVAILABLE", message: `the server cannot be reached (${error.message})` });
  }
  if (!response.ok) throw await failure(response);
  return response.json();
}

export const api = {
  caller: (signal) => request("GET", "/caller", { signal }),
  stats: (signal) => request("GET", "/admin/stats", { signal }),
  listJobs: (query, signal) => request("GET", "/jobs", { query, signal }),
  getJob: (id, signal) => request("GET", `/jobs/${encodeURIComponent(id)}`, { signal }),
  submitJob: (body) => request("POST", "/jobs", { body }),
  cancelJob: (id) => request("POST", `/jobs/${encodeURIComponent(id)}:cancel`, { body: {} }),
  retryJob: (id) => request("POST", `/jobs/${encodeURIComponent(id)}:retry`, { body: {} }),
  listAttempts: (id, signal) => request("GET", `/jobs/${encodeURIComponent(id)}/attempts`, { signal }),
  // CancelJobs / RetryJobs: {count}; with validateOnly, how many jobs the call would change.
  bulk: (action, filter, validateOnly = false) =>
    request("POST", `/jobs:${action}`, { body: { filter, validate_only: validateOnly } }),
  listTypes: (query, signal) => request("GET", "/types", { query, signal }),
  pauseType: (type) => request("POST", `/types/${encodeURIComponent(type)}:pause`, { body: {} }),
  resumeType: (type) => request("POST", `/types/${encodeURIComponent(type)}:resume`, { body: {} }),
  setLimits: (type, body) => request("PUT", `/limits/${encodeURIComponent(type)}`, { body }),
  deleteLimits: (type) => request("DELETE", `/limits/${encodeURIComponent(type)}`),
  listExecutors: (signal) => request("GET", "/executors", { signal }),
  listSchedules: (query, signal) => request("GET", "/schedules", { query, signal }),
  pauseSchedule: (name) => request("POST", `/schedules/${encodeURIComponent(name)}:pause`, { body: {} }),
  resumeSchedule: (name) => request("POST", `/schedules/${encodeURIComponent(name)}:resume`, { body: {} }),
  triggerSchedule: (name) => request("POST", `/schedules/${encodeURIComponent(name)}:trigger`, { body: {} }),
  updateSchedule: (name, body) => request("PATCH", `/schedules/${encodeURIComponent(name)}`, { body }),
};

// Reads a newline-delimited JSON response, calling onItem for each object as it arrives.
export async function readNdjson(response, onItem) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, newline).trim();
      buffer = buffer.slice(newline + 1);
      if (line) onItem(JSON.parse(line));
    }
  }
  if (buffer.trim()) onItem(JSON.parse(buffer));
}

// GET /jobs/{id}:watch: onJob(job) for the job now and after every change, until it finishes.
// Resolves when the stream ends; rejects with ApiError (or AbortError through signal).
export async function watchJob(id, onJob, signal) {
  let response;
  try {
    response = await fetch(`/jobs/${encodeURIComponent(id)}:watch`, {
      headers: authHeaders({ Accept: "application/x-ndjson" }),
      signal,
      cache: "no-store",
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, { status: "UNAVAILABLE", message: `the server cannot be reached (${error.message})` });
  }
  if (!response.ok) throw await failure(response);
  let streamError = null;
  await readNdjson(response, (item) => {
    if (item && item.error) streamError = new ApiError(item.error.code || 500, item.error);
    else if (item && !Array.isArray(item)) onJob(item);
  });
  if (streamError) throw streamError;
}
