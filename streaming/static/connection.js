// One live stream to the recognizer over the native protocol (docs/protocol.md), kept alive
// across network trouble and server restarts by session resume ("Resume" there): the page asks
// for it in `start`, keeps the audio the server has not acknowledged yet (at most 60 s) and
// the last token, and when the connection drops or the server says `moved` it connects again
// (through a load balancer: any replica with the same --resume-key), sends `resume` and the
// kept audio from the acknowledged offset, and goes on: no committed word lost or shown twice,
// times continuous. A refused resume, or a server from before resume, goes on as a new stream
// from the oldest audio kept, its times and utterance ids moved to continue this one's.
// A browser sees only "the websocket failed" when a handshake is refused, so the page then asks
// the same URL with a plain GET, which the server answers with the real reason (401 token, 503
// full, or 426 = it would have accepted).

import { LatencyTracker, SendLog } from "./latency.js";

export const SUPPORTED_RATES = [8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000];
export const BACKOFF_S = [1, 2, 4, 8, 15];
// After a drop the first try is quick: a balancer has other replicas ready.
export const RESUME_BACKOFF_S = [0.25, 1, 2, 4, 8, 15];
// Audio kept for a resume (or while disconnected), at most: longer than the server's longest
// utterance (30 s) plus what it replays before one, as the Python client's --max-unacked-s.
export const MAX_KEPT_MS = 60000;
// Without resume (a server from before it): sent audio kept from this long before the
// unfinished utterance's start, so a new stream recognizes that utterance again.
const REPLAY_LEAD_MS = 300;
const MAX_BUFFERED_BYTES = 1 << 20;
// Close codes after which the stream may go on elsewhere: going away, abnormal (no close
// frame), internal error, service restart, try again later (client/connection.py's list).
const RESUMABLE_CLOSE_CODES = [1001, 1006, 1011, 1012, 1013];

/** The plain message and what to do, per problem (the page shows both). */
export const PROBLEMS = {
  unreachable: ["Cannot reach the recognizer.", "Check that the server is running and the address is right; the page keeps retrying."],
  token: ["The server refused the access token (HTTP 401).", "Enter the right token in the Token field (or add ?token=… to the address) and press Start again."],
  full: ["The server is full right now.", "The page retries by itself; or try again in a minute."],
  shutting_down: ["The server is shutting down or restarting.", "The page reconnects by itself when it is back."],
  dropped: ["The connection dropped.", "Reconnecting…; the transcript is kept and the stream resumes where the server left off (the page keeps 60 s of audio)."],
  moved: ["The server is restarting and handed the stream over.", "Reconnecting…; the stream resumes on another server, the transcript is kept."],
  resume_rejected: ["The server could not resume the stream.", "It goes on as a new stream from the audio the page kept; the transcript is kept."],
  resume_gap: ["The server has not acknowledged the last 60 s of audio (the most the page keeps).", "If the connection drops now, the captions go on with a gap."],
  refused: ["The server refused the websocket connection although it is up.", "Its Origin allow-list may not include this page (--allow-origin), or a proxy in between does not pass websockets."],
  no_endpoint: ["This server has no native stream endpoint at /v1/stream.", "Open the page from the recognizer's own address."],
  server_error: ["The server ended the stream.", "Press Start to begin a new one."],
};

/** ws(s):// URL of the native endpoint beside the page, with the token as ?token=. */
export function streamUrl(baseURI, token, websocket = true) {
  const url = new URL("../v1/stream", baseURI);
  if (websocket) url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  if (token) url.searchParams.set("token", token);
  return url.href;
}

/** `msg` with its times moved by `ms` and its utterance id by `ids` (a new stream's). */
export function shifted(msg, ms, ids) {
  if (!ms && !ids) return msg;
  const out = { ...msg };
  for (const key of ["start_ms", "end_ms", "audio_ms"]) if (typeof out[key] === "number") out[key] += ms;
  if (typeof out.utterance_id === "number") out.utterance_id += ids;
  if (Array.isArray(out.words)) out.words = out.words.map((w) => ({ ...w, start_ms: Number(w.start_ms ?? 0) + ms, end_ms: Number(w.end_ms ?? w.start_ms ?? 0) + ms }));
  return out;
}

export class Stream {
  /**
   * id: a name unique on the page; rate: the PCM's sample rate (sent with `start`);
   * offsetMs: the page's clock at the stream's start (times continue across sources);
   * maxKeptMs: the most audio kept for a resume (or while disconnected);
   * hooks: onMessage(msg, context) with context {key, offsetMs} (messages are in this
   * stream's own times and utterance ids, whatever connection brought them),
   * onState(state, detail), onProblem(kind, message, action, retryInS),
   * onInterrupted(key), onDone().
   *
   * Positions are samples of this stream (every chunk pushed, from 0); a server stream
   * started after a refused resume begins at `base`, and its offsets are added to it.
   */
  constructor({ id, baseURI, token, rate, hooks, offsetMs = 0, maxKeptMs = MAX_KEPT_MS }) {
    this.id = id;
    this.baseURI = baseURI;
    this.token = token;
    this.rate = rate;
    this.hooks = hooks;
    this.offsetMs = offsetMs; // the page's clock at this stream's position 0
    this.maxKeptMs = maxKeptMs;
    this.context = { key: String(id), offsetMs };
    this.kept = []; // {from, pcm}: audio a resume or a new connection may still need
    this.total = 0; // samples pushed
    this.sent = 0; // furthest position sent on any connection
    this.acked = 0; // the server has what a resume needs before this position
    this.resumeToken = null;
    this.resumable = false; // the server acknowledges (it sent an ack, moved or resumed)
    this.withResume = true; // false once a server refused `"resume": true` (predates resume)
    this.base = 0; // where the current server stream begins
    this.shiftMs = 0;
    this.shiftIds = 0;
    this.lastFinal = -1; // utterance id (this stream's) of the last final shown
    this.openUtteranceMs = null; // without resume: the unfinished utterance's start
    this.droppedMs = 0; // audio lost: not sent and past the bound
    this.overflowed = false;
    this.resumes = []; // one record per reconnection (tests and the console read them)
    this.sendLog = new SendLog();
    this.tracker = new LatencyTracker(this.sendLog);
    this.trackers = [this.tracker];
    this.attempt = 0;
    this.backoff = BACKOFF_S;
    this.ws = null;
    this.plan = null; // the next connection's first message: null = a new stream from `base`
    this.ending = false;
    this.cancelled = false;
    this.finished = false;
  }

  start() {
    this.connect();
  }

  connect() {
    this.retryTimer = null;
    if (this.cancelled) return;
    this.hooks.onState(this.resumes.length ? "reconnecting" : "connecting");
    const ws = new WebSocket(streamUrl(this.baseURI, this.token));
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.opened = false;
    this.live = false;
    this.endSent = false;
    this.fatal = null;
    this.moved = null;
    this.rejected = null;
    ws.onopen = () => {
      this.opened = true;
    };
    ws.onmessage = (event) => this.receive(ws, event);
    ws.onclose = (event) => this.closed(ws, event);
  }

  /** The first message of a connection, sent on `ready`: resume, or start a stream. */
  handshake(ws) {
    if (this.plan?.type === "resume") {
      this.sentStart = null;
      return ws.send(JSON.stringify(this.plan));
    }
    const start = { type: "start", sample_rate: this.rate, encoding: "pcm_s16le", channels: 1 };
    if (this.withResume) start.resume = true;
    this.sentStart = start;
    ws.send(JSON.stringify(start));
  }

  receive(ws, event) {
    const t = performance.now() / 1000;
    if (ws !== this.ws || typeof event.data !== "string") return;
    let msg;
    try {
      msg = JSON.parse(event.data);
    } catch {
      return;
    }
    const type = msg.type;
    if (type === "ready") return this.handshake(ws);
    if (type === "started" || type === "resumed") return this.begin(msg);
    if (type === "error" && msg.code === "invalid_field" && !this.live && this.sentStart?.resume && /resume/.test(msg.message || "")) {
      // A server from before resume: plain streams from now on, a new stream after a drop.
      this.withResume = false;
      return this.handshake(ws);
    }
    if (type === "error" && (msg.code === "resume_rejected" || (!this.live && this.plan?.type === "resume"))) {
      // Refused (or, from a replica that predates resume, not understood): a new stream.
      this.rejected = msg;
      this.resumeToken = null;
      if (this.resumes.length) this.resumes[this.resumes.length - 1].refused = msg.reason ?? msg.code ?? null;
      if (!msg.fatal) ws.close(1000); // the server would keep it open: go on elsewhere
      return;
    }
    if (type === "ack" || type === "moved") {
      this.resumable = true;
      if (Number.isInteger(msg.offset) && typeof msg.token === "string") {
        this.acked = Math.max(this.acked, this.base + msg.offset);
        this.resumeToken = msg.token;
        this.trim();
      }
      if (type === "moved") this.moved = msg;
      return;
    }
    if (type === "error" && msg.fatal) this.fatal = msg;
    msg = shifted(msg, this.shiftMs, this.shiftIds);
    if ((type === "partial" || type === "final") && typeof msg.utterance_id === "number") {
      if (msg.utterance_id <= this.lastFinal) return; // its final is shown already
      if (type === "final") this.lastFinal = msg.utterance_id;
      this.openUtteranceMs = type === "partial" ? Number(msg.start_ms ?? 0) : null;
    }
    this.tracker.onMessage(msg, t);
    this.hooks.onMessage(msg, this.context);
  }

  /** `started` or `resumed`: send from where the server wants the audio. */
  begin(msg) {
    const resumed = msg.type === "resumed";
    if (resumed) {
      this.resumable = true;
      this.cursor = this.base + Number(msg.offset ?? this.acked - this.base);
    } else {
      // A new server stream from the oldest audio kept (0 on the first connection).
      this.base = this.keptFrom;
      this.acked = this.base;
      this.shiftMs = (this.base * 1000) / this.rate;
      this.cursor = this.base;
    }
    if (this.cursor < this.keptFrom) {
      // Past the bound: what is gone is a gap (the server's times stay right).
      this.cursor = this.keptFrom;
    }
    this.live = true;
    this.attempt = 0;
    this.hooks.onState("live", msg);
    this.flush();
  }

  /** Queue PCM (Int16Array) for sending; sent at once while connected. */
  push(pcm) {
    if (this.ending || this.cancelled || !pcm.length) return;
    this.kept.push({ from: this.total, pcm });
    this.total += pcm.length;
    this.trim();
    this.flush();
  }

  get keptFrom() {
    return this.kept.length ? this.kept[0].from : this.total;
  }

  /** Drop what no resume (or new stream) needs; past MAX_KEPT_MS, the oldest anyway. */
  trim() {
    let needed = this.sent;
    if (this.withResume) needed = Math.min(this.acked, this.sent);
    else if (this.openUtteranceMs !== null) {
      const start = Math.round(((this.openUtteranceMs - REPLAY_LEAD_MS) * this.rate) / 1000);
      needed = Math.min(this.sent, Math.max(start, 0));
    }
    while (this.kept.length && this.kept[0].from + this.kept[0].pcm.length <= needed) this.kept.shift();
    const limit = (this.maxKeptMs * this.rate) / 1000;
    while (this.kept.length > 1 && this.total - this.kept[0].from > limit) {
      const old = this.kept.shift();
      const end = old.from + old.pcm.length;
      if (end > this.sent) this.droppedMs += ((end - Math.max(old.from, this.sent)) * 1000) / this.rate;
      if (this.withResume && this.resumable && end > this.acked && !this.overflowed) {
        this.overflowed = true;
        const [message, action] = PROBLEMS.resume_gap;
        this.hooks.onProblem("resume_gap", message, action, null);
      }
    }
  }

  flush() {
    const ws = this.ws;
    if (!ws || !this.live || ws.readyState !== WebSocket.OPEN) return;
    let i = this.kept.findIndex((c) => c.from + c.pcm.length > this.cursor);
    while (i >= 0 && i < this.kept.length && ws.bufferedAmount < MAX_BUFFERED_BYTES) {
      const c = this.kept[i];
      const piece = c.from >= this.cursor ? c.pcm : c.pcm.subarray(this.cursor - c.from);
      ws.send(piece);
      this.cursor = c.from + c.pcm.length;
      if (this.cursor > this.sent) {
        this.sent = this.cursor;
        this.sendLog.record(performance.now() / 1000, (this.sent * 1000) / this.rate);
      }
      i += 1;
    }
    this.trim();
    if (this.cursor < this.total) {
      clearTimeout(this.flushTimer);
      this.flushTimer = setTimeout(() => this.flush(), 20);
    } else if (this.ending && !this.endSent) {
      ws.send(JSON.stringify({ type: "end" }));
      this.endSent = true;
    }
  }

  /** No more audio: the server finalizes and closes (onDone follows). */
  finish() {
    this.ending = true;
    if (!this.ws && !this.retryTimer) this.done();
    this.flush();
  }

  /** The person stopped: finish when connected; while disconnected, stop trying. */
  stop() {
    if (this.ws && this.live) this.finish();
    else this.cancel();
  }

  /** Where this stream's audio ends on the page's clock (ms). */
  get endMs() {
    return this.offsetMs + (this.sent * 1000) / this.rate;
  }

  /** Stop at once (no end, no retries). */
  cancel() {
    this.cancelled = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.flushTimer);
    if (this.ws) this.ws.close(1000);
    this.done();
  }

  done() {
    if (this.finished) return;
    this.finished = true;
    this.hooks.onState(this.failed ? "failed" : "done");
    this.hooks.onDone();
  }

  closed(ws, event) {
    if (ws !== this.ws) return;
    this.ws = null;
    clearTimeout(this.flushTimer);
    if (this.cancelled) return;
    if (this.endSent && event.code === 1000 && this.cursor >= this.total) return this.done();
    if (!this.opened) return this.diagnose();
    if (this.rejected) {
      // The token was refused (expired, another key, …): a new stream at once.
      const [message, action] = PROBLEMS.resume_rejected;
      this.hooks.onProblem("resume_rejected", `${message} (${this.rejected.message || this.rejected.reason})`, action, null);
      this.attempt = 0;
      return this.reconnect("resume_rejected", true);
    }
    const tooLong = event.code === 1008 && this.fatal?.code === "session_too_long";
    if (event.code === 1008 && !tooLong) {
      return this.fail("server_error", this.fatal?.message || event.reason || null);
    }
    const restarting = event.code === 1001 || event.code === 1012; // shutdown, drain
    const kind = this.moved ? "moved" : restarting ? "shutting_down" : event.code === 1013 ? "full" : "dropped";
    if (tooLong) this.attempt = 0; // session_too_long: a new stream goes on at once
    // A close a resume may mend (client/connection.py's list); any other: a new stream.
    const mendable = this.moved || RESUMABLE_CLOSE_CODES.includes(event.code);
    this.reconnect(tooLong ? "dropped" : kind, tooLong || !mendable);
  }

  /** Plan the next connection (a resume when possible) and retry with back-off. */
  reconnect(kind, newStream) {
    this.hooks.onInterrupted(this.context.key);
    const record = { reason: kind, at: performance.now() / 1000 };
    this.resumes.push(record);
    const canResume = this.withResume && this.resumable && this.resumeToken && this.acked >= this.keptFrom;
    if (!newStream && canResume) {
      this.plan = { type: "resume", token: this.resumeToken };
      record.offset = this.acked;
    } else {
      // A new stream from the oldest audio kept; its times and ids continue this one's.
      this.plan = null;
      this.acked = this.keptFrom;
      this.resumable = false;
      this.resumeToken = null;
      this.shiftIds = this.lastFinal + 1;
      this.openUtteranceMs = null;
      record.newStreamAt = this.keptFrom;
    }
    this.backoff = RESUME_BACKOFF_S;
    if (kind === "resume_rejected") return this.retry(null, 0);
    this.retry(kind);
  }

  async diagnose() {
    let kind = "unreachable";
    let detail = null;
    try {
      const response = await fetch(streamUrl(this.baseURI, this.token, false), { cache: "no-store" });
      if (response.status === 401) kind = "token";
      else if (response.status === 404) kind = "no_endpoint";
      else if (response.status === 503) {
        const body = await response.json().catch(() => ({}));
        detail = body.error || null;
        kind = /shutting down/.test(detail || "") ? "shutting_down" : "full";
      } else kind = "refused";
    } catch {
      kind = "unreachable";
    }
    if (this.cancelled || this.finished) return;
    if (kind === "token" || kind === "no_endpoint" || kind === "refused") return this.fail(kind, detail);
    this.retry(kind, null, detail);
  }

  /** Connect again after a delay; `kind` null: no problem to show (it was shown). */
  retry(kind, delay = null, detail = null) {
    const steps = this.backoff;
    const wait = delay ?? steps[Math.min(this.attempt, steps.length - 1)];
    this.attempt += 1;
    if (kind) {
      const [message, action] = PROBLEMS[kind] ?? PROBLEMS.dropped;
      this.hooks.onProblem(kind, detail ? `${message} (${detail})` : message, action, wait);
    }
    this.hooks.onState(this.resumes.length ? "reconnecting" : "retrying", wait);
    this.retryTimer = setTimeout(() => this.connect(), wait * 1000);
  }

  fail(kind, detail = null) {
    const [message, action] = PROBLEMS[kind];
    this.hooks.onProblem(kind, detail ? `${message} (${detail})` : message, action, null);
    this.failed = true;
    this.cancelled = true;
    this.done();
  }
}
