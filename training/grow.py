"""Deepen an exported model without changing what it computes ("grow, then train").

The shipped model underfits even its own training sentences, so it lacks capacity;
training a bigger one from scratch would cost the ~45 000 CPU steps again. Instead
new transformer layers are inserted into the trained encoder as identity blocks: each
is a copy of the layer below it (trained attention inputs and layer norms to start
from) with its two residual outputs -- the attention's ``out_proj`` and the
feed-forward's ``output_dense`` -- set to zero. With the pre-layer-norm ("stable
layer norm") encoder, ``x + 0`` is ``x``, so the grown model gives the same logits
as the original, and training then teaches the new layers what to add.

    python -m training.grow --from streaming/models/tiny-en --out training/work/grown \\
        --after 2,5
    python -m training.train --init-from training/work/grown ...

``--after 2,5`` inserts one layer after original layers 2 and 5 (0-based): 6 -> 8.
The output directory is a complete model directory (processor files and the model
card too, so ``--init-from`` knows the step it continues from).
"""

from __future__ import annotations

import argparse
import copy
import shutil
from pathlib import Path
from typing import Any

import torch


def grow_layers(model: Any, after: list[int]) -> Any:
    """Insert an identity copy of encoder layer ``i`` after it, for each ``i`` in ``after``."""
    if not model.config.do_stable_layer_norm:
        # Post-layer-norm layers normalise after the residual sum, so a zero block
        # is not an identity there.
        raise ValueError("growing needs the pre-layer-norm encoder (do_stable_layer_norm)")
    old = list(model.wav2vec2.encoder.layers)
    if any(not 0 <= i < len(old) for i in after):
        raise ValueError(f"--after indexes must be in 0..{len(old) - 1}")
    new: list[torch.nn.Module] = []
    for index, layer in enumerate(old):
        new.append(layer)
        for _ in range(after.count(index)):
            added = copy.deepcopy(layer)
            for linear in (added.attention.out_proj, added.feed_forward.output_dense):
                torch.nn.init.zeros_(linear.weight)
                torch.nn.init.zeros_(linear.bias)
            new.append(added)
    model.wav2vec2.encoder.layers = torch.nn.ModuleList(new)
    model.config.num_hidden_layers = len(new)
    return model


def history_line(step: int, before: int, after_count: int, after: list[int]) -> str:
    """The model card line that records a growth (read back by ``export.card_history``)."""
    where = ",".join(str(i) for i in after)
    return (
        f"Grown at step {step} from {before} to {after_count} transformer layers "
        f"(`python -m training.grow --after {where}`: identity copies of the layers below "
        "them, outputs unchanged, then trained on)."
    )


def main(argv: list[str] | None = None) -> None:
    from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor

    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--from", dest="source", type=Path, required=True, help="model directory")
    p.add_argument("--out", type=Path, required=True, help="new model directory")
    p.add_argument(
        "--after", required=True, help="comma-separated 0-based layer indexes to insert after"
    )
    args = p.parse_args(argv)
    after = [int(i) for i in args.after.split(",") if i.strip()]
    model = Wav2Vec2ForCTC.from_pretrained(args.source)
    model.train(False)  # eval mode; newer transformers leave PreTrainedModel.eval untyped
    before = model.config.num_hidden_layers
    grow_layers(model, after)
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    Wav2Vec2Processor.from_pretrained(args.source).save_pretrained(args.out)
    for name in ("MODEL_CARD.md", "special_tokens_map.json"):
        if (args.source / name).exists():
            shutil.copy2(args.source / name, args.out / name)
    card = args.out / "MODEL_CARD.md"
    if card.exists():  # ``train --init-from`` carries this line into every later card
        from training.export import card_progress

        step = card_progress(args.out).step
        with card.open("a", encoding="utf-8") as f:
            f.write(f"\n{history_line(step, before, model.config.num_hidden_layers, after)}\n")
    params = sum(t.numel() for t in model.parameters())
    layers = model.config.num_hidden_layers
    print(f"{args.source}: {before} -> {layers} layers, {params} parameters -> {args.out}")


if __name__ == "__main__":
    main()
