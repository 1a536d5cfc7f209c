"""Offline pipeline that builds the project's tiny English Wav2Vec2 CTC model.

Everything here (text, speech synthesis, training, export, evaluation) runs
without any network access, so the shipped model can be rebuilt from scratch.
"""
