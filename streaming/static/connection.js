// One live stream to the recognizer over the native protocol (docs/protocol.md), kept alive
// across network trouble: audio waits in a bounded queue while there is no connection, the
// page reconnects with back-off, and the unfinished utterance's audio is sent again so a
// dropped connection loses no words. A browser sees only "the websocket failed" when a
// handshake is refused, so the page then asks the same URL with a plain GET, which the
// server answers with the real reason (401 token, 503 full, or 426 = it would have accepted).

import { LatencyTracker, SendLog } from "./latency.js";

export const SUPPORTED_RATES = [8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000];
export const BACKOFF_S = [1, 2, 4, 8, 15];
const MAX_PENDING_MS = 30000; // audio kept while disconnected
const REPLAY_KEEP_MS = 30000; // sent audio kept to redo an interrupted utterance
const REPLAY_LEAD_MS = 300; // audio before the utterance's start, for the VAD
const MAX_BUFFERED_BYTES = 1 << 20;

/** The plain message and what to do, per problem (the page shows both). */
export const PROBLEMS = {
  unreachable: ["Cannot reach the recognizer.", "Check that the server is running and the address is right; the page keeps retrying."],
  token: ["The server refused the access token (HTTP 401).", "Enter the right token in the Token field (or add ?token=… to the address) and press Start again."],
  full: ["The server is full right now.", "The page retries by itself; or try again in a minute."],
  shutting_down: ["The server is shutting down or restarting.", "The page reconnects by itself when it is back."],
  dropped: ["The connection dropped.", "Reconnecting; the transcript is kept and the audio waits (up to 30 s)."],
  dropped_utterance: ["The connection dropped mid-utterance.", "Reconnecting; the transcript is kept and the unfinished sentence is recognized again."],
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

export class Stream {
  /**
   * id: a name unique on the page; rate: the PCM's sample rate (sent with `start`);
   * offsetMs: the page's clock at the stream's start (times continue across sources);
   * hooks: onMessage(msg, context) with context {key, offsetMs} of the connection that
   * received it, onState(state, detail), onProblem(kind, message, action, retryInS),
   * onInterrupted(key, willReplay), onDone().
   */
  constructor({ id, baseURI, token, rate, hooks, offsetMs = 0 }) {
    this.id = id;
    this.connections = 0;
    this.baseURI = baseURI;
    this.token = token;
    this.rate = rate;
    this.hooks = hooks;
    this.pending = []; // Int16Array chunks not sent yet
    this.pendingSamples = 0;
    this.droppedMs = 0;
    this.trackers = [];
    this.offsetMs = offsetMs; // the page's clock at this stream's position 0
    this.attempt = 0;
    this.ws = null;
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
    this.hooks.onState("connecting");
    const ws = new WebSocket(streamUrl(this.baseURI, this.token));
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.opened = false;
    this.endSent = false;
    this.sent = []; // {from, pcm} of this stream, for replay
    this.sentSamples = 0;
    this.openUtteranceMs = null;
    this.fatal = null;
    ws.onopen = () => {
      this.opened = true;
      this.sendLog = new SendLog();
      this.tracker = new LatencyTracker(this.sendLog);
      this.trackers.push(this.tracker);
      this.connections += 1;
      this.context = { key: `${this.id}.${this.connections}`, offsetMs: this.offsetMs };
      ws.send(JSON.stringify({ type: "start", sample_rate: this.rate, encoding: "pcm_s16le", channels: 1 }));
      this.flush();
    };
    ws.onmessage = (event) => this.receive(event);
    ws.onclose = (event) => this.closed(ws, event);
  }

  receive(event) {
    const t = performance.now() / 1000;
    if (typeof event.data !== "string") return;
    let msg;
    try {
      msg = JSON.parse(event.data);
    } catch {
      return;
    }
    if (msg.type === "ready") {
      this.attempt = 0;
      this.hooks.onState("live", msg);
    } else if (msg.type === "partial") {
      this.openUtteranceMs = Number(msg.start_ms ?? 0);
    } else if (msg.type === "final") {
      this.openUtteranceMs = null;
    } else if (msg.type === "error" && msg.fatal) {
      this.fatal = msg;
    }
    this.tracker.onMessage(msg, t);
    this.hooks.onMessage(msg, this.context);
  }

  /** Queue PCM (Int16Array) for sending; sent at once while connected. */
  push(pcm) {
    if (this.ending || this.cancelled) return;
    this.pending.push(pcm);
    this.pendingSamples += pcm.length;
    const limit = (MAX_PENDING_MS * this.rate) / 1000;
    while (this.pendingSamples > limit && this.pending.length > 1) {
      const old = this.pending.shift();
      this.pendingSamples -= old.length;
      this.droppedMs += (old.length * 1000) / this.rate;
    }
    this.flush();
  }

  flush() {
    const ws = this.ws;
    if (!ws || !this.opened || ws.readyState !== WebSocket.OPEN) return;
    while (this.pending.length && ws.bufferedAmount < MAX_BUFFERED_BYTES) {
      const pcm = this.pending.shift();
      this.pendingSamples -= pcm.length;
      ws.send(pcm);
      this.sent.push({ from: this.sentSamples, pcm });
      this.sentSamples += pcm.length;
      this.sendLog.record(performance.now() / 1000, (this.sentSamples * 1000) / this.rate);
    }
    const keep = (REPLAY_KEEP_MS * this.rate) / 1000;
    while (this.sent.length > 1 && this.sentSamples - this.sent[1].from > keep) this.sent.shift();
    if (this.pending.length) {
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
    if (this.ws && this.opened) this.finish();
    else this.cancel();
  }

  /** Where this stream's audio ends on the page's clock (ms). */
  get endMs() {
    return this.offsetMs + ((this.opened ? this.sentSamples : 0) * 1000) / this.rate;
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
    if (this.endSent && event.code === 1000 && this.pending.length === 0) return this.done();
    if (!this.opened) return this.diagnose();
    if (event.code === 1008 && this.fatal?.code !== "session_too_long") {
      return this.fail("server_error", this.fatal?.message || event.reason || null);
    }
    // The stream broke: later audio restarts the clock where this stream's audio ends, or
    // where the unfinished utterance began when its audio can be sent again.
    const replayFrom = this.replayStart();
    const requeue = replayFrom === null ? [] : this.replayChunks(replayFrom);
    const from = replayFrom ?? this.sentSamples;
    this.offsetMs += (from * 1000) / this.rate;
    this.pending = requeue.concat(this.pending);
    this.pendingSamples = this.pending.reduce((n, c) => n + c.length, 0);
    const dropped = replayFrom === null ? "dropped" : "dropped_utterance";
    const restarting = event.code === 1001 || event.code === 1012; // shutdown, drain
    const kind = restarting ? "shutting_down" : event.code === 1013 ? "full" : dropped;
    this.hooks.onInterrupted(this.context.key, replayFrom !== null);
    if (event.code === 1008) this.attempt = 0; // session_too_long: a new stream goes on at once
    this.retry(kind);
  }

  replayStart() {
    if (this.openUtteranceMs === null || this.sent.length === 0) return null;
    const want = Math.round(((this.openUtteranceMs - REPLAY_LEAD_MS) * this.rate) / 1000);
    return Math.max(this.sent[0].from, want, 0);
  }

  replayChunks(from) {
    return this.sent
      .filter((c) => c.from + c.pcm.length > from)
      .map((c) => (c.from >= from ? c.pcm : c.pcm.subarray(from - c.from)));
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
    this.retry(kind, detail);
  }

  retry(kind, detail = null) {
    const delay = BACKOFF_S[Math.min(this.attempt, BACKOFF_S.length - 1)];
    this.attempt += 1;
    const [message, action] = PROBLEMS[kind];
    this.hooks.onProblem(kind, detail ? `${message} (${detail})` : message, action, delay);
    this.hooks.onState("retrying", delay);
    this.retryTimer = setTimeout(() => this.connect(), delay * 1000);
  }

  fail(kind, detail = null) {
    const [message, action] = PROBLEMS[kind];
    this.hooks.onProblem(kind, detail ? `${message} (${detail})` : message, action, null);
    this.failed = true;
    this.cancelled = true;
    this.done();
  }
}
