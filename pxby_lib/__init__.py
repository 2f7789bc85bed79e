"""pxby_lib: a reproduction of PixelBytes (arXiv 2409.15512).

Text bytes and pixel-art colours share one 113-id vocabulary; every position of an
item is fed to a sequence model as its 3x3 neighbourhood of ids (the PxBy window).

Glossary (one word per concept, in code, notebooks, params.yaml and README):
  item     one dataset entry: an image and its caption (a Pokemon, an emoji); `item` in
           every table is its index in the prepared dataset
  part     one of an item's three grids: the shape string, the image, the caption
  window   the 3x3 neighbourhood of ids of one position (row above, left, itself); an item
           is a sequence of windows (L, 3, 3)
  centre   the id at a window's middle: the token at that position
  sample   a training example: seq_len consecutive windows and the next centre
  chunk    an evaluation example: prompt_len true windows, then gen_len generated ones
  context  the centre ids before a generated token, from which its window is rebuilt
  row      one line of Table 1: an architecture (`models` in params.yaml)
  run      one (row, seed): seed k splits the items and seeds the training
  history  a run's training log (history.csv)

Modules, one concept each: tokenizer, pixels, sequence (items <-> windows), captions,
sources (raw snapshots), prepare (the prepare stage), dataset (the prepared dataset,
splits, samples), models (and their steppers), train, checkpoint, generate, metrics,
evaluate, baselines, stats, claims, runs (a stage's runs and where their files go), jobs
(parallel workers), render, figures, report, config (params.yaml), runtime (pinned
numerics, devices, paths, progress), notebooks, atomic, cli.
"""

from pxby_lib.runtime import pin_numerics

pin_numerics()  # before anything imports torch: see pxby_lib.runtime

__version__ = "0.2.0"
