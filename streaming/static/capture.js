// Audio sources for a Stream: the microphone (getUserMedia → AudioWorklet → 16-bit PCM
// chunks of ~100 ms) and an audio file (decoded in the browser, sent at real-time pace or
// faster). Both hand Int16Array chunks to `onChunk(pcm, rms)`.
//
// Where to resample (measured with benchmarks/browser_resampling.py, see docs/browser.md):
// the worklet converts to 16 kHz itself ("worklet", the default). Its converter delays the
// audio 1.0 ms, where the server's soxr holds back 24 ms on average, which makes some of
// the server's 240 ms hops wait for the next 100 ms chunk: commit p50 629 ms here vs 719 ms
// with server resampling (44.1 kHz device), and 2.8x fewer bytes uploaded (256 vs 706 kbit/s).
// "server" (?resample=server) sends the device rate with `start`, for comparison.

import { SUPPORTED_RATES } from "./connection.js";
import { toInt16 } from "./resample.js";

export const MODEL_RATE = 16000;
export const CHUNK_MS = 100;

/** Why the microphone could not start, as {kind, message, action}. */
export function micProblem(error) {
  const name = error && error.name;
  if (!window.isSecureContext || !navigator.mediaDevices) {
    return { kind: "insecure", message: "The microphone needs a secure page.", action: "Open the page over https (start the server with TLS) or from localhost." };
  }
  if (name === "NotAllowedError" || name === "SecurityError") {
    return { kind: "mic_denied", message: "Microphone access was denied.", action: "Allow the microphone for this site (the icon in the address bar), then press Start again." };
  }
  if (name === "NotFoundError" || name === "OverconstrainedError" || name === "DevicesNotFoundError") {
    return { kind: "no_mic", message: "No microphone was found.", action: "Plug one in or pick another in the Microphone list and press Start, or stream an audio file instead." };
  }
  if (name === "NotReadableError") {
    return { kind: "mic_busy", message: "The microphone is in use by another program or could not be opened.", action: "Close the other program or pick another microphone, then press Start again." };
  }
  return { kind: "mic_error", message: `The microphone could not start (${name || error}).`, action: "Reload the page and try again, or stream an audio file instead." };
}

/** Audio inputs for the picker ({deviceId, label}); labels appear once permission is given. */
export async function listMicrophones() {
  if (!navigator.mediaDevices?.enumerateDevices) return [];
  const devices = await navigator.mediaDevices.enumerateDevices();
  return devices.filter((d) => d.kind === "audioinput").map((d, i) => ({ deviceId: d.deviceId, label: d.label || `Microphone ${i + 1}` }));
}

export class MicSource {
  /** resample: "worklet" (16 kHz from the page) or "server" (the device rate). */
  constructor({ deviceId, resample, onChunk }) {
    this.deviceId = deviceId;
    this.resample = resample;
    this.onChunk = onChunk;
  }

  /** Opens the microphone; returns the rate of the PCM it will produce. Throws micProblem. */
  async open() {
    if (!window.isSecureContext || !navigator.mediaDevices?.getUserMedia) throw micProblem(null);
    const audio = { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 };
    if (this.deviceId) audio.deviceId = { exact: this.deviceId };
    // The worklet loads while the browser asks for the microphone: audio flows sooner.
    this.context = new AudioContext({ latencyHint: "interactive" });
    const loading = this.context.audioWorklet.addModule(new URL("pcm-worklet.js", document.baseURI));
    try {
      this.media = await navigator.mediaDevices.getUserMedia({ audio });
    } catch (error) {
      throw micProblem(error);
    }
    await loading;
    const deviceRate = this.context.sampleRate;
    const serverSide = this.resample === "server" && SUPPORTED_RATES.includes(deviceRate);
    this.rate = serverSide ? deviceRate : MODEL_RATE;
    this.node = new AudioWorkletNode(this.context, "pcm-capture", {
      numberOfInputs: 1,
      numberOfOutputs: 0,
      channelCount: 1,
      channelCountMode: "explicit",
      processorOptions: { targetRate: this.rate, chunkMs: CHUNK_MS },
    });
    this.node.port.onmessage = (event) => this.onChunk(new Int16Array(event.data.pcm), event.data.rms);
    this.source = this.context.createMediaStreamSource(this.media);
    this.source.connect(this.node);
    if (this.context.state === "suspended") await this.context.resume();
    this.label = this.media.getAudioTracks()[0]?.label || "microphone";
    return this.rate;
  }

  /** Sends what the worklet still holds, then releases the microphone. */
  async close() {
    if (this.node) {
      this.node.port.postMessage("flush");
      await new Promise((resolve) => setTimeout(resolve, 50));
      this.node.port.postMessage("stop");
      this.source.disconnect();
    }
    this.media?.getTracks().forEach((track) => track.stop());
    await this.context?.close().catch(() => {});
  }
}

/** Decodes a file to 16 kHz mono Float32 in the browser (any format the browser reads). */
export async function decodeFile(file) {
  const bytes = await file.arrayBuffer();
  const context = new OfflineAudioContext(1, 1, MODEL_RATE);
  const buffer = await context.decodeAudioData(bytes); // resampled to the context's 16 kHz
  const mono = new Float32Array(buffer.length);
  for (let c = 0; c < buffer.numberOfChannels; c++) {
    const data = buffer.getChannelData(c);
    for (let i = 0; i < mono.length; i++) mono[i] += data[i] / buffer.numberOfChannels;
  }
  return mono;
}

export class FileSource {
  /** speed: 1 = real time, 2 = twice as fast, …; onLevel for the meter. */
  constructor({ samples, speed, onChunk, onEnd }) {
    this.samples = samples;
    this.speed = speed;
    this.onChunk = onChunk;
    this.onEnd = onEnd;
    this.rate = MODEL_RATE;
    this.position = 0;
  }

  get durationS() {
    return this.samples.length / this.rate;
  }

  start() {
    const size = (this.rate * CHUNK_MS) / 1000;
    const t0 = performance.now();
    const tick = () => {
      if (this.stopped) return;
      // Send every chunk whose audio "has been spoken" by now at this speed.
      const due = ((performance.now() - t0) / 1000) * this.speed * this.rate;
      while (this.position < this.samples.length && this.position < due + size) {
        const chunk = this.samples.subarray(this.position, this.position + size);
        let sum = 0;
        for (let i = 0; i < chunk.length; i++) sum += chunk[i] * chunk[i];
        this.onChunk(toInt16(chunk), Math.sqrt(sum / chunk.length));
        this.position += chunk.length;
      }
      if (this.position >= this.samples.length) {
        this.stopped = true;
        this.onEnd();
        return;
      }
      this.timer = setTimeout(tick, CHUNK_MS / this.speed / 2);
    };
    tick();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
  }
}
