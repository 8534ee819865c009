"""Jobs: one training run, a keras-tuner study, its workers, a Hydra multirun."""
