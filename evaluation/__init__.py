"""What training/ and benchmarks/ both measure with, written once.

The two tool folders answer different questions (how good is the model; how fast and how
accurate is the running system) but score and describe their runs the same way. This
package is the one module they share; it imports neither of them (an import contract in
``pyproject.toml`` checks it), so neither folder reaches into the other:

* :mod:`evaluation.machine`: which CPU a number was measured on;
* :mod:`evaluation.numbers`: numbers as spoken words (training labels, Whisper's digits);
* :mod:`evaluation.scoring`: text normalization, edit distance, WER/CER;
* :mod:`evaluation.whisper`: the Whisper tiny.en reference that both compare against.

It sits at the top level rather than inside either folder because it belongs to neither:
benchmarks importing ``training`` (or the reverse) would pull a whole pipeline along for
three functions. Nothing heavy happens at import time: faster-whisper loads on first use.
"""
