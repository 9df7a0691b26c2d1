"""The U-Net bundle's handlers (bundles/unet_ldct/scripts/handlers.py)."""

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver, EarlyStopping

from bundle_loading import bundle_scripts

H = bundle_scripts("unet_ldct").handlers


def _validation(tmp_path, trainer):
    """An evaluator whose val_loss is read from a list, with train.json's best-model Checkpoint and EarlyStopping."""
    losses = []
    evaluator = Engine(lambda e, b: None)
    evaluator.state.best_metric, evaluator.state.best_metric_epoch = -1.0, -1

    @evaluator.on(Events.EPOCH_COMPLETED)
    def _score(e):
        e.state.metrics["val_loss"] = losses.pop(0)

    net = torch.nn.Linear(1, 1)
    score = lambda e: -e.state.metrics["val_loss"]  # noqa: E731
    best = Checkpoint({"model": net}, DiskSaver(str(tmp_path), require_empty=False), filename_pattern="model.pt",
                      score_function=score, score_name="val_loss", n_saved=1)
    stop = EarlyStopping(patience=3, score_function=score, trainer=trainer)
    evaluator.add_event_handler(Events.EPOCH_COMPLETED, best)
    evaluator.add_event_handler(Events.EPOCH_COMPLETED, stop)
    return evaluator, losses, net, H.ValidationState(best, stop, evaluator)


def test_validation_state_carries_the_best_score_and_the_patience_across_a_restart(tmp_path):
    trainer = Engine(lambda e, b: None)
    evaluator, losses, net, state = _validation(tmp_path, trainer)
    losses += [0.5, 0.7]  # the best, then one worse validation
    evaluator.run([0], max_epochs=2)
    evaluator.state.best_metric, evaluator.state.best_metric_epoch = 0.5, 1
    saved = state.state_dict()
    assert saved["early_stopping"]["counter"] == 1 and saved["best_metric_epoch"] == 1
    assert [p for p, _ in saved["best_checkpoint"]["_saved"]] == [-0.5]

    # a fresh run (new objects, as after a restart) loads the state: a worse model no longer replaces model.pt
    trainer2 = Engine(lambda e, b: None)
    evaluator2, losses2, net2, state2 = _validation(tmp_path, trainer2)
    state2.load_state_dict(torch.load(_save(tmp_path, saved), weights_only=True))
    with torch.no_grad():
        net2.weight.fill_(42.0)
    losses2 += [0.6]
    evaluator2.run([0], max_epochs=1)
    assert torch.load(tmp_path / "model.pt", weights_only=True)["weight"].item() == net.weight.item() != 42.0
    assert state2.early_stopping.counter == 2 and evaluator2.state.best_metric == 0.5


def _save(tmp_path, state):
    path = tmp_path / "validation.pt"
    torch.save(state, path)
    return path
