// The captions page: wires the sources (microphone, file), the stream and the view.
// URL parameters: token=…  overlay=1 (caption overlay; starts the microphone by itself)
// autostart=1  device=<part of a microphone's name>  resample=worklet|server  lines=N
// size=<CSS length, overlay type size>  low=<confidence under which words are marked>.

import { FileSource, MicSource, decodeFile, listMicrophones } from "./capture.js";
import { Stream } from "./connection.js";
import { summarize } from "./latency.js";
import { LOW_CONFIDENCE, Transcript, formatClock, toSrt, toTxt, toVtt } from "./transcript.js";

const params = new URLSearchParams(location.search);
const overlay = params.get("overlay") === "1";
const lowConfidence = Number(params.get("low")) || LOW_CONFIDENCE;
const $ = (id) => document.getElementById(id);
const SPEECH_RMS = 0.02; // level above which the indicator says "speech"
const SPEECH_HANG_MS = 300;
// Problems that stay on screen once the stream is live again (they tell what happened to it).
const STICKY_PROBLEMS = ["resume_rejected", "resume_gap"];

const transcript = new Transcript();
const view = { nodes: new Map(), stick: true };
let stream = null;
let source = null;
let clockMs = 0; // the page's clock: each new source continues where the last one ended
let streams = 0;
const allStreams = []; // the latency panel counts every stream of the page
let lastSpeechAt = -Infinity;

// The page's state, readable by tests and by anyone in the console.
window.captions = { transcript, finals: [], messages: 0, problems: [], get stream() { return stream; } };

// ---- view ------------------------------------------------------------------------------

function setState(state, text) {
  const el = $("state");
  el.dataset.state = state;
  el.textContent = text;
}

function showProblem(kind, message, action) {
  window.captions.problems.push({ kind, message });
  const box = $("problem");
  box.dataset.kind = kind;
  $("problem-message").textContent = message;
  $("problem-action").textContent = action || "";
  box.hidden = false;
}

function clearProblem() {
  $("problem").hidden = true;
}

/** Marks a word whose confidence is low (a final may revise a committed word's `conf`). */
function markConfidence(span, w) {
  const low = w.conf < lowConfidence;
  span.classList.toggle("low", low);
  if (low) span.title = `confidence ${Math.round(w.conf * 100)} %`;
  else span.removeAttribute("title");
}

/** Paragraph `p` in the DOM: committed words appended, the tentative tail replaced. */
function render(p) {
  let node = view.nodes.get(p);
  if (!node) {
    node = { el: document.createElement("p"), committed: document.createElement("span"), tentative: document.createElement("span"), time: document.createElement("time"), shown: [], spans: [] };
    node.el.className = "utt";
    node.tentative.className = "tentative";
    node.el.append(node.time, node.committed, node.tentative);
    $("transcript").append(node.el);
    view.nodes.set(p, node);
  }
  const range = p.endMs === null ? formatClock(p.startMs) : `${formatClock(p.startMs)}–${formatClock(p.endMs)}`;
  node.time.textContent = range;
  node.el.classList.toggle("open", !p.final && !p.interrupted);
  node.el.classList.toggle("final", p.final);
  node.el.classList.toggle("interrupted", p.interrupted && !p.final);
  // Committed words never change, except that a final may carry the LM's text: redo then.
  const same = node.shown.length <= p.committed.length && node.shown.every((w, i) => w === p.committed[i].word);
  if (!same) {
    node.committed.replaceChildren();
    node.shown = [];
    node.spans = [];
  }
  for (const w of p.committed.slice(node.shown.length)) {
    if (node.shown.length) node.committed.append(" ");
    const span = document.createElement("span");
    span.textContent = w.word;
    node.committed.append(span);
    node.spans.push(span);
    node.shown.push(w.word);
  }
  p.committed.forEach((w, i) => markConfidence(node.spans[i], w));
  const tail = p.tentative.map((w) => w.word).join(" ");
  node.tentative.textContent = tail && p.committed.length ? ` ${tail}` : tail;
}

function removeStale() {
  const alive = new Set(transcript.paragraphs);
  for (const [p, node] of view.nodes) {
    if (!alive.has(p)) {
      node.el.remove();
      view.nodes.delete(p);
    }
  }
}

function follow() {
  const box = $("transcript");
  if (view.stick) box.scrollTop = box.scrollHeight;
  $("jump").hidden = view.stick || overlay;
}

function announce(words) {
  if (!words.length) return;
  const region = $("announce");
  region.append(`${words.map((w) => w.word).join(" ")} `);
  while (region.childNodes.length > 20) region.firstChild.remove();
}

function showLatency() {
  const s = summarize(allStreams.flatMap((one) => one.trackers));
  for (const kind of ["partial", "commit", "final"]) {
    $(`lat-${kind}-n`).textContent = s[kind].count;
    $(`lat-${kind}-p50`).textContent = s[kind].p50 === null ? "–" : Math.round(s[kind].p50);
    $(`lat-${kind}-p95`).textContent = s[kind].p95 === null ? "–" : Math.round(s[kind].p95);
  }
}

function showLevel(rms) {
  const db = 20 * Math.log10(Math.max(rms, 1e-5)); // -100 … 0 dBFS
  $("level-bar").style.width = `${Math.max(0, Math.min(100, ((db + 60) / 60) * 100))}%`;
  if (rms >= SPEECH_RMS) lastSpeechAt = performance.now();
  showSpeech();
}

/** Speech while the level was above the threshold in the last SPEECH_HANG_MS. */
function showSpeech() {
  const speaking = performance.now() - lastSpeechAt < SPEECH_HANG_MS;
  const el = $("speech");
  if ((el.dataset.speech === "on") !== speaking) {
    el.dataset.speech = speaking ? "on" : "off";
    el.textContent = speaking ? "speech" : "silence";
  }
  clearTimeout(view.speechTimer);
  if (speaking) view.speechTimer = setTimeout(showSpeech, SPEECH_HANG_MS);
}

// ---- the stream --------------------------------------------------------------------------

function onMessage(msg, context) {
  window.captions.messages += 1;
  let change = null;
  if (msg.type === "partial") change = transcript.onPartial(msg, context);
  else if (msg.type === "final") {
    change = transcript.onFinal(msg, context);
    window.captions.finals.push(msg);
  } else if (msg.type === "error") {
    showProblem(`server_${msg.code}`, `Server: ${msg.message}`, msg.fatal ? "" : "The stream goes on.");
  } else if (msg.type === "lag") {
    setState("live", msg.state === "behind" ? `Live · server ${(msg.lag_ms / 1000).toFixed(1)} s behind` : "Live");
  }
  if (change) {
    removeStale();
    render(change.paragraph);
    announce(change.newlyCommitted);
    follow();
    showLatency();
  }
}

function openStream(rate, onDone) {
  if (stream) clockMs = Math.max(clockMs, stream.endMs);
  streams += 1;
  let reportedDropMs = 0;
  const s = new Stream({
    id: streams,
    baseURI: document.baseURI,
    token: $("token").value.trim(),
    rate,
    offsetMs: clockMs,
    hooks: {
      onMessage,
      onState: (state, detail) => {
        if (stream !== s) return; // an older stream finishing while a new one runs
        if (state === "connecting") setState("connecting", "Connecting…");
        if (state === "reconnecting") setState("reconnecting", detail ? `Reconnecting… (in ${detail} s)` : "Reconnecting…");
        if (state === "live") {
          setState("live", detail?.type === "resumed" ? "Live · resumed" : "Live");
          if (s.droppedMs > reportedDropMs) {
            const lost = ((s.droppedMs - reportedDropMs) / 1000).toFixed(1);
            showProblem("audio_dropped", `${lost} s of audio were lost while disconnected (the page keeps 60 s).`, "The captions go on from here.");
            reportedDropMs = s.droppedMs;
          } else if (!STICKY_PROBLEMS.includes($("problem").dataset.kind)) clearProblem();
        }
        if (state === "retrying") setState("retrying", `Retrying in ${detail} s`);
        if (state === "done") setState("idle", "Not connected");
        if (state === "failed") setState("failed", "Stopped");
      },
      onProblem: (kind, message, action, retryIn) => {
        if (stream !== s) return;
        showProblem(kind, message, retryIn ? `${action} Retrying in ${retryIn} s.` : action);
        if (kind === "token") {
          $("token-details").open = true;
          $("token").select();
        }
      },
      onInterrupted: (key) => {
        const p = transcript.interrupt(key);
        if (p) render(p);
      },
      onDone,
    },
  });
  stream = s;
  allStreams.push(s);
  s.start();
  return s;
}

// ---- sources -----------------------------------------------------------------------------

function micButton(on) {
  const button = $("mic");
  button.setAttribute("aria-pressed", String(on));
  button.textContent = on ? "Stop microphone" : "Start microphone";
}

async function startMic() {
  await stopSource();
  clearProblem();
  micButton(true);
  let s = null;
  const mic = new MicSource({
    deviceId: $("device").value,
    resample: params.get("resample") === "server" ? "server" : "worklet",
    onChunk: (pcm, rms) => {
      showLevel(rms);
      s?.push(pcm);
    },
  });
  source = mic;
  let rate;
  try {
    rate = await mic.open();
  } catch (problem) {
    source = null;
    micButton(false);
    await mic.close();
    showProblem(problem.kind || "mic_error", problem.message || String(problem), problem.action || "");
    return;
  }
  if (mic.context.state !== "running") {
    // Autoplay rules (an overlay that starts by itself): audio waits for a click.
    showProblem("autoplay", "The browser holds the microphone's audio until you click.", "Click anywhere on the page.");
    document.addEventListener("click", () => mic.context.resume().then(clearProblem), { once: true });
  }
  window.captions.input = { source: mic.label, deviceRate: mic.context.sampleRate, sentRate: rate, resample: mic.resample };
  await fillDevices(mic.media.getAudioTracks()[0]?.getSettings().deviceId);
  s = openStream(rate, () => {
    if (source === mic) stopSource();
  });
}

async function stopSource() {
  const old = source;
  source = null;
  if (!old) return;
  if (old instanceof MicSource) {
    micButton(false);
    await old.close();
  } else old.stop();
  stream?.stop();
  showLevel(0);
}

async function startFile(file) {
  await stopSource();
  clearProblem();
  setState("connecting", `Decoding ${file.name}…`);
  let samples;
  try {
    samples = await decodeFile(file);
  } catch (error) {
    setState("idle", "Not connected");
    showProblem("file", `${file.name} could not be decoded as audio.`, "Pick a WAV, MP3, Ogg, FLAC or WebM file.");
    return;
  }
  let s = null;
  const fileSource = new FileSource({
    samples,
    speed: Number($("speed").value) || 1,
    onChunk: (pcm, rms) => {
      showLevel(rms);
      s?.push(pcm);
    },
    onEnd: () => {
      showLevel(0);
      s?.finish();
    },
  });
  source = fileSource;
  s = openStream(fileSource.rate, () => {
    if (source === fileSource) source = null;
  });
  fileSource.start();
}

async function fillDevices(selected) {
  const select = $("device");
  const current = selected ?? select.value;
  let mics = [];
  try {
    mics = await listMicrophones();
  } catch {
    return;
  }
  const wanted = params.get("device");
  select.replaceChildren(new Option("Default microphone", ""));
  for (const m of mics) {
    if (m.deviceId === "default" || m.deviceId === "") continue;
    select.append(new Option(m.label, m.deviceId, false, m.deviceId === current));
  }
  if (wanted && !selected) {
    const match = mics.find((m) => m.label.toLowerCase().includes(wanted.toLowerCase()));
    if (match) select.value = match.deviceId;
  }
}

// ---- downloads -----------------------------------------------------------------------------

function download(format) {
  const finals = transcript.finals();
  const [text, type] = {
    txt: [toTxt(finals), "text/plain"],
    srt: [toSrt(finals), "application/x-subrip"],
    vtt: [toVtt(finals), "text/vtt"],
  }[format];
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], { type: `${type};charset=utf-8` }));
  const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-");
  a.download = `captions-${stamp}.${format}`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

// ---- wiring --------------------------------------------------------------------------------

function init() {
  if (overlay) {
    document.documentElement.classList.add("overlay");
    const lines = Number(params.get("lines"));
    if (lines > 0) $("transcript").style.setProperty("--lines", String(lines));
    if (params.get("size")) $("transcript").style.setProperty("--overlay-size", params.get("size"));
  }
  if (params.get("token")) $("token").value = params.get("token");
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (!source) startMic();
  });
  $("mic").addEventListener("click", () => (source instanceof MicSource ? stopSource() : startMic()));
  $("file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) startFile(file);
    event.target.value = "";
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) startFile(file);
  });
  document.querySelectorAll("[data-format]").forEach((b) => b.addEventListener("click", () => download(b.dataset.format)));
  $("clear").addEventListener("click", () => {
    transcript.paragraphs = transcript.paragraphs.filter((p) => p === transcript.open);
    removeStale();
    if (!source && !transcript.open) {
      clockMs = 0; // the next file's times are the file's own again
      stream = null;
    }
  });
  $("device").addEventListener("change", () => {
    if (source instanceof MicSource) startMic(); // switch microphones on the fly
  });
  const box = $("transcript");
  box.addEventListener("scroll", () => {
    view.stick = box.scrollTop + box.clientHeight >= box.scrollHeight - 24;
    $("jump").hidden = view.stick || overlay;
  });
  $("jump").addEventListener("click", () => {
    view.stick = true;
    follow();
    box.focus();
  });
  navigator.mediaDevices?.addEventListener?.("devicechange", () => fillDevices());
  fillDevices().then(() => (window.captions.devicesListed = true));
  if (overlay || params.get("autostart") === "1") startMic();
}

init();
