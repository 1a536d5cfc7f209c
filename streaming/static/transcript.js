// The transcript: one paragraph per utterance, fed by the server's partial / final messages,
// with times on one clock across reconnections; and its exports, in the terminal client's
// formats (TXT = `streaming-client --plain --timestamps`, SRT / WebVTT = client/subtitles.py).

export const MAX_LINE_CHARS = 42;
export const MAX_LINES = 2;
// Words under this `conf` are marked (subtly). `conf` is the mean probability of the word's
// frames, so it runs high: tiny-en's misheard words score about 0.85-0.9, its sure ones 0.93+.
export const LOW_CONFIDENCE = 0.9;

// Python's str.isspace() characters (client/captions.py `sanitize` splits on them).
const PY_SPACE = /[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/g;

/** Server text without control characters; whitespace runs become one space. */
export function sanitize(text) {
  return String(text ?? "")
    .replace(PY_SPACE, " ")
    .replace(/\p{Cc}/gu, "")
    .split(" ")
    .filter(Boolean)
    .join(" ");
}

function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Stream position as M:SS.s (H:MM:SS.s past an hour), as client/captions.py. */
export function formatClock(ms) {
  const tenths = roundHalfEven(Math.max(0, ms) / 100);
  const [h, m, s] = hoursMinutesSeconds(Math.floor(tenths / 10));
  const t = tenths % 10;
  return h ? `${h}:${two(m)}:${two(s)}.${t}` : `${m}:${two(s)}.${t}`;
}

/** Whole seconds as [hours, minutes, seconds]. */
function hoursMinutesSeconds(seconds) {
  const minutes = Math.floor(seconds / 60);
  return [Math.floor(minutes / 60), minutes % 60, seconds % 60];
}

const two = (n) => String(n).padStart(2, "0");

export class Transcript {
  constructor() {
    this.paragraphs = [];
  }

  /** The paragraph of an utterance still being spoken, if any. */
  get open() {
    return this.paragraphs.findLast((p) => !p.final && !p.interrupted) ?? null;
  }

  /**
   * Messages carry their stream's context: {key} (unique per stream on the page: its
   * connections, resumed or not, share it, and their utterance ids continue the stream's)
   * and {offsetMs} (the page's clock at that stream's position 0).
   */
  paragraphFor(msg, ctx) {
    const key = `${ctx.key}:${msg.utterance_id ?? 0}`;
    const known = this.paragraphs.findLast((p) => p.key === key);
    if (known) return known;
    const p = { key, stream: ctx.key, startMs: 0, endMs: null, committed: [], tentative: [], final: false, interrupted: false, reason: null };
    this.paragraphs.push(p);
    return p;
  }

  /**
   * Applies a partial; returns {paragraph, newlyCommitted: [words]}, or null for an
   * utterance whose final is shown already. Committed words shown never go: a new stream
   * after a refused resume may commit fewer at first, its words then show as tentative.
   */
  onPartial(msg, ctx) {
    const p = this.paragraphFor(msg, ctx);
    if (p.final) return null;
    const before = p.committed.length;
    const words = (msg.words || []).map((w) => word(w, ctx.offsetMs));
    p.startMs = ctx.offsetMs + Number(msg.start_ms ?? 0);
    p.interrupted = false;
    p.endMs = null;
    const committed = words.filter((w) => w.committed);
    if (committed.length >= before) {
      p.committed = committed;
      p.tentative = words.filter((w) => !w.committed);
    } else {
      p.tentative = words.slice(before);
    }
    if (words.length === 0) {
      // A partial without a word list: keep the text it sent.
      p.tentative = sanitize(msg.text).split(" ").filter(Boolean).map((w) => ({ word: w, conf: 1, committed: false }));
    }
    return { paragraph: p, newlyCommitted: p.committed.slice(before) };
  }

  /** Applies a final; returns {paragraph, newlyCommitted}, or null if shown already. */
  onFinal(msg, ctx) {
    const p = this.paragraphFor(msg, ctx);
    if (p.final) return null;
    const before = p.committed.length;
    const words = (msg.words || []).map((w) => ({ ...word(w, ctx.offsetMs), committed: true }));
    p.startMs = ctx.offsetMs + Number(msg.start_ms ?? 0);
    p.endMs = ctx.offsetMs + Number(msg.end_ms ?? msg.start_ms ?? 0);
    p.committed = words.length || !msg.text ? words : sanitize(msg.text).split(" ").map((w) => ({ word: w, conf: 1, committed: true }));
    p.tentative = [];
    p.final = true;
    p.interrupted = false;
    p.reason = msg.reason ?? null;
    p.text = sanitize(msg.text);
    p.words = words;
    return { paragraph: p, newlyCommitted: p.committed.slice(Math.min(before, p.committed.length)) };
  }

  /**
   * Stream `key`'s connection broke mid-utterance: its open paragraph stays, marked
   * interrupted, until the resumed (or new) stream's results for it continue it in place.
   */
  interrupt(key) {
    const p = this.paragraphs.findLast((q) => q.stream === key && !q.final && !q.interrupted);
    if (!p) return null;
    p.interrupted = true;
    p.endMs = Math.max(p.startMs, ...p.committed.concat(p.tentative).map((w) => w.endMs));
    return p;
  }

  /** Finished utterances as finals on the page's clock (what the exports are made of). */
  finals() {
    return this.paragraphs
      .filter((p) => p.final || p.interrupted)
      .map((p) => {
        const words = p.final ? p.words : p.committed.concat(p.tentative);
        return {
          text: p.final ? p.text : words.map((w) => w.word).join(" "),
          start_ms: Math.round(p.startMs),
          end_ms: Math.round(p.endMs ?? p.startMs),
          words: words.map((w) => ({ word: w.word, start_ms: Math.round(w.startMs), end_ms: Math.round(w.endMs), conf: w.conf })),
        };
      });
  }
}

function word(w, offsetMs) {
  return {
    word: sanitize(w.word),
    conf: Number(w.conf ?? 1),
    committed: Boolean(w.committed),
    startMs: offsetMs + Number(w.start_ms ?? 0),
    endMs: offsetMs + Number(w.end_ms ?? w.start_ms ?? 0),
  };
}

// ---- exports ---------------------------------------------------------------------------

/** Greedy word wrap; a word longer than `width` gets a line of its own. */
export function wrap(text, width = MAX_LINE_CHARS) {
  const lines = [];
  let current = "";
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (current && [...current].length + 1 + [...word].length > width) {
      lines.push(current);
      current = word;
    } else {
      current = current ? `${current} ${word}` : word;
    }
  }
  if (current) lines.push(current);
  return lines;
}

const fits = (words, width, maxLines) => wrap(words.join(" "), width).length <= maxLines;

/** Cues of at most two lines of 42 characters, split at word times (client/subtitles.py). */
export function cuesFromFinals(finals, width = MAX_LINE_CHARS, maxLines = MAX_LINES) {
  const cues = [];
  for (const final of finals) {
    const text = sanitize(final.text);
    if (!text) continue;
    const start = Math.trunc(final.start_ms ?? 0);
    const end = Math.max(Math.trunc(final.end_ms ?? start), start + 1);
    const words = (final.words || []).filter((w) => sanitize(w.word));
    if (wrap(text, width).length <= maxLines || words.length === 0) {
      cues.push({ startMs: start, endMs: end, lines: wrap(text, width) });
      continue;
    }
    const groups = [];
    let group = [];
    for (const w of words) {
      const candidate = [...group, w];
      if (group.length && !fits(candidate.map((x) => sanitize(x.word)), width, maxLines)) {
        groups.push(group);
        group = [w];
      } else {
        group = candidate;
      }
    }
    if (group.length) groups.push(group);
    groups.forEach((g, i) => {
      let gStart = i === 0 ? start : Math.trunc(g[0].start_ms ?? start);
      let gEnd = i === groups.length - 1 ? end : Math.trunc(g[g.length - 1].end_ms ?? end);
      gStart = Math.max(gStart, cues.length && i > 0 ? cues[cues.length - 1].endMs : gStart);
      gEnd = Math.max(gEnd, gStart + 1);
      cues.push({ startMs: gStart, endMs: gEnd, lines: wrap(g.map((x) => sanitize(x.word)).join(" "), width) });
    });
  }
  return cues;
}

function clock(ms, sep) {
  ms = Math.max(0, ms);
  const [h, m, s] = hoursMinutesSeconds(Math.floor(ms / 1000));
  return `${two(h)}:${two(m)}:${two(s)}${sep}${String(ms % 1000).padStart(3, "0")}`;
}

export function toSrt(finals) {
  return cuesFromFinals(finals)
    .map((cue, i) => `${i + 1}\n${clock(cue.startMs, ",")} --> ${clock(cue.endMs, ",")}\n${cue.lines.join("\n")}\n`)
    .join("\n");
}

export function toVtt(finals) {
  const out = ["WEBVTT\n"];
  for (const cue of cuesFromFinals(finals)) {
    const lines = cue.lines.map((line) => line.replaceAll("-->", "->"));
    out.push(`${clock(cue.startMs, ".")} --> ${clock(cue.endMs, ".")}\n${lines.join("\n")}\n`);
  }
  return out.join("\n");
}

/** One line per utterance with its times, as `streaming-client --plain --timestamps`. */
export function toTxt(finals) {
  return finals
    .map((f) => [f, sanitize(f.text)])
    .filter(([, text]) => text)
    .map(([f, text]) => `[${formatClock(f.start_ms ?? 0)}-${formatClock(f.end_ms ?? 0)}] ${text}\n`)
    .join("");
}
