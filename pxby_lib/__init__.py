"""pxby_lib: a reproduction of PixelBytes (arXiv 2409.15512).

Text bytes and pixel-art colours share one 113-id vocabulary; every position of an
item is fed to a sequence model as its 3x3 neighbourhood of ids (the PxBy window).
Modules, one concept each: tokenizer, pixels, sequence, sources, data, models,
train, checkpoint, generate, metrics, evaluate, render, report, params.
"""

__version__ = "0.1.0"
