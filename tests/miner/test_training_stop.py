"""train_model stops between epochs when its caller says the work is stale."""
from miner.datasets import load_builtin, split_dataset
from miner.model_spec import build_spec
from miner.sml import sml_for
from miner.training import Hyperparams, train_model


def test_should_stop_ends_training_after_the_current_epoch():
    digits = load_builtin("digits")
    train, _ = split_dataset(digits, 0.2, seed=3)
    spec = build_spec("mlp", train.d, train.num_classes, digits.image_shape)
    asked = []

    def stale() -> bool:
        asked.append(True)
        return len(asked) >= 2

    result = train_model(
        spec, train, sml_for(b"\x01" * 32, b"\x02" * 20, train.d), target_train_bps=None,
        time_limit_s=60, seed=0, hyperparams=Hyperparams(max_epochs=50), should_stop=stale,
    )
    assert result.stopped_by == "stopped"
    assert result.epochs == 2 and len(asked) == 2


def test_diverging_training_ends_instead_of_hanging_the_export():
    import pytest

    from miner.quantize import TrainingDiverged

    digits = load_builtin("digits")
    train, _ = split_dataset(digits, 0.2, seed=3)
    spec = build_spec("mlp", train.d, train.num_classes, digits.image_shape)
    with pytest.raises(TrainingDiverged, match="not finite"):
        train_model(
            spec, train, sml_for(b"\x01" * 32, b"\x02" * 20, train.d), target_train_bps=9_000,
            time_limit_s=20, seed=0, hyperparams=Hyperparams(learning_rate=1e30, max_epochs=5),
        )
