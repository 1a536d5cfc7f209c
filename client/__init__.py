"""Streaming speech recognition client: microphone or files in, live captions and latency out.

from client import stream_file
result = await stream_file("speech.wav", "ws://127.0.0.1:8765/", speed=0)
print(result.transcript, result.summary()["latency_ms"])
"""

from client.api import stream_file, stream_files, stream_microphone
from client.connection import DEFAULT_URL, ClientError, ConnectError, StreamResult
from client.files import AudioFileError

__all__ = [
    "DEFAULT_URL",
    "AudioFileError",
    "ClientError",
    "ConnectError",
    "StreamResult",
    "stream_file",
    "stream_files",
    "stream_microphone",
]
