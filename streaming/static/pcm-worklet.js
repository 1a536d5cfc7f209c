// AudioWorklet processor: microphone → mono 16-bit PCM chunks of ~100 ms for the websocket.
// Runs on the audio thread; posts {pcm: ArrayBuffer, rms, peak} per chunk (transferred, no
// copy). processorOptions.targetRate: resample to that rate here (the page's default, 16 kHz),
// or null to send the device rate and let the server resample (see docs/browser.md for the
// latency measured each way).
import { Resampler, toInt16 } from "./resample.js";

class PcmCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = options.processorOptions || {};
    const target = opts.targetRate || sampleRate;
    this.rate = target;
    this.resampler = target === sampleRate ? null : new Resampler(sampleRate, target);
    this.chunk = new Float32Array(Math.round((target * (opts.chunkMs || 100)) / 1000));
    this.filled = 0;
    this.running = true;
    this.port.onmessage = (event) => {
      if (event.data === "flush") this.emit(true);
      if (event.data === "stop") this.running = false;
    };
  }

  emit(partial) {
    if (this.filled === 0) return;
    const samples = partial ? this.chunk.subarray(0, this.filled) : this.chunk;
    let sum = 0;
    let peak = 0;
    for (let i = 0; i < samples.length; i++) {
      const a = Math.abs(samples[i]);
      sum += a * a;
      if (a > peak) peak = a;
    }
    const pcm = toInt16(samples);
    this.port.postMessage({ pcm: pcm.buffer, rms: Math.sqrt(sum / samples.length), peak }, [pcm.buffer]);
    this.filled = 0;
  }

  process(inputs) {
    const input = inputs[0];
    if (!this.running) return false;
    if (!input || input.length === 0) return true;
    let mono = input[0];
    if (input.length > 1) {
      mono = new Float32Array(input[0].length);
      for (const channel of input) for (let i = 0; i < mono.length; i++) mono[i] += channel[i] / input.length;
    }
    const samples = this.resampler ? this.resampler.process(mono) : mono;
    let offset = 0;
    while (offset < samples.length) {
      const n = Math.min(samples.length - offset, this.chunk.length - this.filled);
      this.chunk.set(samples.subarray(offset, offset + n), this.filled);
      this.filled += n;
      offset += n;
      if (this.filled === this.chunk.length) this.emit(false);
    }
    return true;
  }
}

registerProcessor("pcm-capture", PcmCapture);
