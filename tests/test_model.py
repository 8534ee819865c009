"""The notebook's model, exactly, and the config knobs that change it."""
from __future__ import annotations

from src.config import ModelConfig


def test_default_model_is_the_notebooks_258762_parameters():
    from src.core.model import build_cnn

    model = build_cnn(ModelConfig())
    assert model.count_params() == 258_762
    kinds = [layer.__class__.__name__ for layer in model.layers]
    assert kinds == ["Conv2D", "MaxPooling2D"] * 3 + ["Flatten", "Dense", "Dropout", "Dense", "Dropout", "Dense"]
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [32, 64, 128]
    assert all(c.kernel_size == (3, 3) and c.padding == "valid" for c in convs)
    assert model.output_shape == (None, 10)
    assert model.layers[-1].activation.__name__ == "softmax"


def test_filters_dropout_and_dense_units_come_from_config():
    from src.core.model import build_cnn

    model = build_cnn(ModelConfig(filters=[16, 32], dense_units=[64], dropout=0.25))
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    dropouts = [layer for layer in model.layers if layer.__class__.__name__ == "Dropout"]
    assert [c.filters for c in convs] == [16, 32]
    assert [d.rate for d in dropouts] == [0.25]
    assert model.count_params() != 258_762
