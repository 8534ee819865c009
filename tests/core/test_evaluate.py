"""Evaluation (src/core/evaluate.py): the same loss, accuracy and predicted classes as
Keras's own on the arrays."""
from __future__ import annotations

from src.config import ModelConfig


def test_evaluation_takes_the_batches_that_evaluate_and_predict_on_arrays_take():
    """evaluate.evaluate feeds the same pipeline with autotuning off to `model.evaluate` and
    `model.predict`: the loss and accuracy equal Keras's on the arrays to the bit, and so does
    every predicted class (a partial last batch included)."""
    import numpy as np

    from src.config import TrainerConfig
    from src.core import evaluate, train

    rng = np.random.default_rng(1)
    images = rng.random((70, 32, 32, 3), dtype=np.float32)
    labels = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 70)]
    model = train.prepare_model(ModelConfig(filters=[8, 16], dense_units=[16]), TrainerConfig(), seed=3)

    ours = evaluate.evaluate(model, images, labels, [str(i) for i in range(10)], batch_size=32)
    loss, accuracy = model.evaluate(images, labels, batch_size=32, verbose=0)
    probabilities = model.predict(images, batch_size=32, verbose=0)
    assert (ours.loss, ours.accuracy) == (float(loss), float(accuracy))
    np.testing.assert_array_equal(ours.y_pred, probabilities.argmax(axis=1))
    np.testing.assert_array_equal(ours.y_true, labels.argmax(axis=1))


def test_a_signal_during_evaluation_is_raised_after_a_batch_not_where_it_lands(monkeypatch):
    """A real SIGTERM while the evaluation's input is being built (where, in training, a
    KeyboardInterrupt raised inside TensorFlow's iterator building crashed a process): it is
    raised by the check after a batch (interrupt.check), not in the code it landed in."""
    import os
    import signal

    import numpy as np
    import pytest

    from src.config import TrainerConfig
    from src.core import evaluate, interrupt, train

    rng = np.random.default_rng(1)
    images = rng.random((40, 32, 32, 3), dtype=np.float32)
    labels = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 40)]
    model = train.prepare_model(ModelConfig(filters=[8, 16], dense_units=[16]), TrainerConfig(), seed=3)
    made, original = [], evaluate.batches

    def batches_with_a_signal(*args, **kwargs):
        made.append(original(*args, **kwargs))
        os.kill(os.getpid(), signal.SIGTERM)  # handled at the next bytecode, here in this frame
        for _ in range(1000):
            pass
        return made[-1]

    before = signal.getsignal(signal.SIGTERM)
    interrupt.reset()
    interrupt.install()
    try:
        monkeypatch.setattr(evaluate, "batches", batches_with_a_signal)
        with pytest.raises(KeyboardInterrupt, match="received signal 15") as raised:
            evaluate.evaluate(model, images, labels, [str(i) for i in range(10)], batch_size=16)
        assert raised.traceback[-1].name == "check", raised.traceback[-1]
        assert len(made) == 1  # raised at the first batch's end, before predict built its input
    finally:
        interrupt.reset()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, before)
