// Streaming sample-rate conversion for the capture worklet: windowed-sinc interpolation with
// a low-pass at 90 % of the lower Nyquist frequency. Pure (no Web Audio), so the page's tests
// and benchmarks/browser_resampling.py can measure it outside the audio thread.
//
// Latency: an output sample needs `half` input samples after it, so the converter delays
// the audio by `half` input samples: 16 output periods = 1.0 ms at any input rate.

const HALF_WIDTH = 16; // kernel half-width, in output-rate periods
const MAX_KERNELS = 1024; // cached kernels, one per fractional phase

export class Resampler {
  constructor(inRate, outRate) {
    this.inRate = inRate;
    this.outRate = outRate;
    this.step = inRate / outRate; // input samples per output sample
    const scale = Math.min(1, outRate / inRate);
    this.cutoff = 0.5 * scale * 0.9; // cycles per input sample
    this.half = Math.ceil(HALF_WIDTH * Math.max(1, this.step));
    // Input still needed, starting at absolute input index `start`; `half` zeros of
    // left context so the very first output sample has its kernel.
    this.buffer = new Float32Array(this.half);
    this.start = -this.half;
    this.produced = 0; // output samples so far
    this.kernels = new Map();
  }

  /** Latency the converter adds, in milliseconds. */
  get delayMs() {
    return (1000 * this.half) / this.inRate;
  }

  kernel(phase) {
    const key = Math.round(phase * 1e6);
    let k = this.kernels.get(key);
    if (k) return k;
    const n = 2 * this.half;
    k = new Float32Array(n);
    let sum = 0;
    for (let i = 0; i < n; i++) {
      const x = i - this.half + 1 - phase; // distance (input samples) from the output point
      const arg = 2 * this.cutoff * x;
      const sinc = arg === 0 ? 1 : Math.sin(Math.PI * arg) / (Math.PI * arg);
      const w = 0.42 + 0.5 * Math.cos((Math.PI * x) / this.half) + 0.08 * Math.cos((2 * Math.PI * x) / this.half);
      k[i] = sinc * Math.max(0, w);
      sum += k[i];
    }
    for (let i = 0; i < n; i++) k[i] /= sum; // unity gain at DC
    if (this.kernels.size < MAX_KERNELS) this.kernels.set(key, k);
    return k;
  }

  /** Feed input samples; returns the output samples they complete (Float32Array). */
  process(input) {
    if (this.inRate === this.outRate) return Float32Array.from(input);
    const merged = new Float32Array(this.buffer.length + input.length);
    merged.set(this.buffer);
    merged.set(input, this.buffer.length);
    const end = this.start + merged.length; // one past the last input index held
    const out = [];
    for (;;) {
      const t = this.produced * this.step;
      const base = Math.floor(t);
      if (base + this.half >= end) break;
      const k = this.kernel(t - base);
      const from = base - this.half + 1 - this.start;
      let acc = 0;
      for (let i = 0; i < k.length; i++) acc += k[i] * merged[from + i];
      out.push(acc);
      this.produced++;
    }
    const keepFrom = Math.floor(this.produced * this.step) - this.half + 1;
    const drop = Math.max(0, Math.min(merged.length, keepFrom - this.start));
    this.buffer = merged.slice(drop);
    this.start += drop;
    return Float32Array.from(out);
  }
}

/** Float samples in [-1, 1] as 16-bit PCM (clipped). */
export function toInt16(samples) {
  const out = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    out[i] = s < 0 ? Math.round(s * 32768) : Math.round(s * 32767);
  }
  return out;
}
