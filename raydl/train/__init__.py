"""Ray Train for the fit kinds (classify, language_model, gan, vae).

- experiment.py: what every fit experiment file holds (`FitExperiment`: kind, seed,
  `scaling:`, `checkpoint:`, `log:`), no torch or Ray imported.
- plumbing.py: worker set-up, epoch checkpoints (restore, report), all-reduce, resource
  checks and the TorchTrainer driver that tails the run's metrics for the progress line.
- loop.py: the one epoch loop every fit kind runs on its workers, over a task object that
  holds what differs between kinds (raydl.sl.tasks, raydl.gen.tasks).
"""
