// GET /admin/stats sampled over time, so that throughput can be computed here in the browser:
// the server only keeps counts (cheap to read with millions of jobs), and the difference between two
// samples is what finished in between. Samples survive a reload through sessionStorage.

import { FINAL_STATUSES } from "./util.js";

const KEY = "jobs-console.samples";
export const WINDOW_MS = 10 * 60 * 1000;
export const MIN_SPAN_SECONDS = 10;

let samples = load();

function load() {
  try {
    const stored = JSON.parse(sessionStorage.getItem(KEY) || "[]");
    return Array.isArray(stored) ? stored.filter((s) => s && s.t && s.counts) : [];
  } catch {
    return [];
  }
}

// Records one GetStats reply; returns the samples kept (the last WINDOW_MS).
export function record(stats, t = Date.now()) {
  samples.push({ t, counts: { ...(stats.status_breakdown || {}) } });
  samples = samples.filter((sample) => sample.t >= t - WINDOW_MS);
  try {
    sessionStorage.setItem(KEY, JSON.stringify(samples));
  } catch {
    // storage full or disabled: throughput then starts over on reload
  }
  return samples;
}

export function allSamples() {
  return samples;
}

function increase(before, after, statuses) {
  let total = 0;
  for (const status of statuses) {
    // Counts only fall when old jobs are pruned or a job leaves a status: never negative throughput.
    total += Math.max(0, (after.counts[status] || 0) - (before.counts[status] || 0));
  }
  return total;
}

// Jobs per second that reached each final status over the last windowMs, or null without two samples.
export function rates(windowMs, now = Date.now()) {
  const recent = samples.filter((sample) => sample.t >= now - windowMs);
  if (recent.length < 2) return null;
  const first = recent[0];
  const last = recent[recent.length - 1];
  const seconds = (last.t - first.t) / 1000;
  if (seconds < MIN_SPAN_SECONDS) return null; // a rate over a few seconds says little

  const result = { seconds };
  for (const status of FINAL_STATUSES) result[status] = increase(first, last, [status]) / seconds;
  result.finished = increase(first, last, FINAL_STATUSES) / seconds;
  return result;
}

// Finished jobs per bucket of bucketMs over the last windowMs: [{t, COMPLETED, FAILED, CANCELLED}].
export function buckets(windowMs, bucketMs, now = Date.now()) {
  const count = Math.ceil(windowMs / bucketMs);
  const start = now - count * bucketMs;
  const result = [];
  for (let i = 0; i < count; i += 1) {
    result.push({ t: start + i * bucketMs, COMPLETED: 0, FAILED: 0, CANCELLED: 0, covered: false });
  }
  for (let i = 1; i < samples.length; i += 1) {
    const before = samples[i - 1];
    const after = samples[i];
    if (after.t < start) continue;
    const index = Math.min(count - 1, Math.max(0, Math.floor((after.t - start) / bucketMs)));
    result[index].covered = true;
    for (const status of FINAL_STATUSES) result[index][status] += increase(before, after, [status]);
  }
  return result;
}
