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


def test_the_claim_is_the_consensus_number_for_the_exported_model_however_training_stops(monkeypatch):
    """The integer model is evaluated only when the float model nears the target, and at the
    end; what is returned is always the consensus evaluator's accuracy of the returned model."""
    from miner import training
    from miner.integer_eval import evaluate_integer_model

    digits = load_builtin("digits")
    train, _ = split_dataset(digits, 0.2, seed=3)
    spec = build_spec("mlp", train.d, train.num_classes, digits.image_shape)
    sml = sml_for(b"\x01" * 32, b"\x02" * 20, train.d)
    checks = []
    original = training.evaluate_integer_model
    monkeypatch.setattr(training, "evaluate_integer_model", lambda *a: checks.append(1) or original(*a))

    hit = train_model(spec, train, sml, target_train_bps=9_700, time_limit_s=60, seed=0,
                      hyperparams=Hyperparams(max_epochs=50))
    assert hit.stopped_by == "target" and hit.met_target
    assert hit.train_bps == evaluate_integer_model(hit.integer_model, sml, train) >= 9_700
    assert len(checks) < hit.epochs  # not every epoch paid for an integer evaluation

    checks.clear()
    missed = train_model(spec, train, sml, target_train_bps=10_000, time_limit_s=60, seed=0,
                         hyperparams=Hyperparams(max_epochs=2))
    assert missed.stopped_by == "epochs" and not missed.met_target and len(checks) == 1
    assert missed.train_bps == evaluate_integer_model(missed.integer_model, sml, train)
