"""Restricted Boltzmann machines on Ray Train: `rbm` (Bernoulli RBM, CD-k / PCD-k),
`dbn` (greedily stacked RBMs fine-tuned as a classifier) and `cf_rbm` (the RBM for
collaborative filtering on MovieLens ratings).

- experiment.py: the experiment files and the check step (no torch); ratings.py: the
  MovieLens readers (numpy only).
- models.py: the RBMs and their CD gradients (pure torch); learner.py: CD updates
  averaged over the workers by hand, persistent chains in the checkpoint.
- tasks.py (rbm, dbn), cf.py (cf_rbm): the epoch loop's tasks; trainer.py: `fit`;
  evaluate.py: `raydl eval`.
"""
