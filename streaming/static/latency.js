// Per-word latency, computed as the terminal client does (client/latency.py): the time the
// audio holding a word's last sample was sent → when the word first appears (partial
// latency) / becomes committed (commit latency). Times are performance.now() seconds.

export const DEFAULT_TOLERANCE_MS = 100;

/** When the audio up to each stream position (ms) was handed to the websocket. */
export class SendLog {
  constructor() {
    this.ends = [];
    this.times = [];
  }

  record(t, endMs) {
    this.ends.push(endMs);
    this.times.push(t);
  }

  /** Time the chunk holding position `ms` was sent, or null if it never was. */
  timeAt(ms) {
    let lo = 0;
    let hi = this.ends.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.ends[mid] < ms) lo = mid + 1;
      else hi = mid;
    }
    return lo < this.ends.length ? this.times[lo] : null;
  }
}

/** Turns one stream's timestamped partial / final messages into per-word records. */
export class LatencyTracker {
  constructor(sendLog, toleranceMs = DEFAULT_TOLERANCE_MS) {
    this.sendLog = sendLog;
    this.toleranceMs = toleranceMs;
    this.words = [];
    this.utterances = [];
    this.byUtt = new Map();
  }

  onMessage(msg, t) {
    if (msg.type === "partial") this.observe(msg.utterance_id ?? 0, msg.words || [], t, false);
    if (msg.type === "final") {
      this.observe(msg.utterance_id ?? 0, msg.words || [], t, true);
      const sent = this.sendLog.timeAt(msg.end_ms ?? 0);
      this.utterances.push({ finalLatencyMs: sent === null ? null : (t - sent) * 1000 });
    }
  }

  observe(utt, words, t, final) {
    if (!this.byUtt.has(utt)) this.byUtt.set(utt, []);
    const known = this.byUtt.get(utt);
    const taken = new Set();
    for (const w of words) {
      const text = String(w.word ?? "");
      const start = Number(w.start_ms ?? 0);
      const end = Number(w.end_ms ?? start);
      let rec = this.match(known, text, end, taken);
      if (!rec) {
        rec = { word: text, endMs: end, shownAt: t, shownSentAt: this.sendLog.timeAt(end), committedAt: null, committedSentAt: null };
        known.push(rec);
        this.words.push(rec);
      }
      taken.add(rec);
      rec.endMs = end;
      if ((final || w.committed) && rec.committedAt === null) {
        rec.committedAt = t;
        rec.committedSentAt = this.sendLog.timeAt(end);
      }
    }
  }

  match(known, text, end, taken) {
    let best = null;
    let bestD = Infinity;
    for (const rec of known) {
      if (rec.word !== text || taken.has(rec)) continue;
      const d = Math.abs(rec.endMs - end);
      if (d <= this.toleranceMs && d < bestD) {
        best = rec;
        bestD = d;
      }
    }
    return best;
  }

  /** First-shown latency (ms) of the words that made it into the transcript. */
  partialLatencies() {
    return this.words.filter((r) => r.committedAt !== null && r.shownSentAt !== null).map((r) => (r.shownAt - r.shownSentAt) * 1000);
  }

  commitLatencies() {
    return this.words.filter((r) => r.committedAt !== null && r.committedSentAt !== null).map((r) => (r.committedAt - r.committedSentAt) * 1000);
  }

  finalLatencies() {
    return this.utterances.filter((u) => u.finalLatencyMs !== null).map((u) => u.finalLatencyMs);
  }
}

/** Nearest-rank percentile, as client/latency.py: always one of the observed values. */
export function percentile(values, p) {
  if (values.length === 0) return null;
  const ordered = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * ordered.length));
  return ordered[rank - 1];
}

/** {count, p50, p95} over every stream's trackers (all sessions of the page). */
export function summarize(trackers) {
  const pick = (f) => trackers.flatMap((tr) => tr[f]());
  const stats = (values) => ({ count: values.length, p50: percentile(values, 50), p95: percentile(values, 95) });
  return {
    partial: stats(pick("partialLatencies")),
    commit: stats(pick("commitLatencies")),
    final: stats(pick("finalLatencies")),
  };
}
