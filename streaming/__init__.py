"""Real-time streaming speech recognition: WebRTC VAD + sliding-window Wav2Vec2 CTC."""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
