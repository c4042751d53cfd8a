"""Model side of glassforge: checkpoint detection and loading, one small module per family, the CLIP
tokenizer, text encoding, the VAE and memory placement.

Import the submodules directly (``glassforge.models.tokenizer``, ...); this package imports nothing so that
loading it has no side effects.
"""
