"""Tags say what was trained; params line up across a defense family (issue 15.4)."""

import mlflow

from lightning_privacy.cli import main
from tests.conftest import REPO

QUICKSTART = str(REPO / "conf" / "experiments" / "quickstart.yaml")
WITH_DP = str(REPO / "conf" / "defense" / "with_dp.yaml")


def test_tags_and_params_of_a_dp_and_a_non_dp_run(in_tmp):
    main(["fit", "--config", QUICKSTART, "--trainer.max_epochs", "1"])
    main(["fit", "--config", QUICKSTART, "--config", WITH_DP, "--trainer.max_epochs", "1",
          "--model.init_args.dp.target_epsilon", "8"])
    client = mlflow.MlflowClient(f"sqlite:///{in_tmp / 'mlruns' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], order_by=["start_time ASC"])
    plain, dp = runs
    assert plain.data.tags["defense"] == "ERM" and plain.data.tags["dp"] == "off"
    assert dp.data.tags["defense"] == "ERM + DP-SGD" and dp.data.tags["dp"] == "on"
    assert dp.data.tags["dp.epsilon"] == "8" and dp.data.tags["dataset"] == "digits"
    assert set(plain.data.params) == set(dp.data.params)
    assert "model.dp.target_epsilon" in plain.data.params and "model.dp" not in plain.data.params
    assert plain.data.params["trainer.callbacks.ModelCheckpoint.monitor"] == "val/acc"
    assert not any(k.startswith("trainer.callbacks/") for k in plain.data.params)


def _defense_classes() -> list[type]:
    import importlib
    import inspect
    import pkgutil

    import lightning_privacy.defenses as defenses
    from lightning.pytorch import LightningModule

    found: dict[str, type] = {}
    for info in pkgutil.walk_packages(defenses.__path__, "lightning_privacy.defenses."):
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, LightningModule) and cls.__module__ == module.__name__:
                found[cls.__qualname__] = cls
    return list(found.values())


def test_every_key_hparam_is_an_init_argument_and_the_defenses_name_theirs():
    import inspect

    classes = {cls.__name__: cls for cls in _defense_classes()}
    for cls in classes.values():
        params = {name for klass in cls.__mro__ if "__init__" in vars(klass)
                  for name in inspect.signature(klass.__init__).parameters}
        assert set(cls.key_hparams) <= params, (cls.__name__, cls.key_hparams)
    named = {name for name, cls in classes.items() if cls.key_hparams}
    assert {"DAP", "Reg", "RelaxLoss", "AdvReg", "MemGuard", "SelfDistillation", "LabelSmoothing",
            "ConfidencePenalty", "LastLayerDropout", "PIGAN", "PrivGAN"} <= named


def test_runs_of_two_defenses_carry_their_own_key_hparams_as_tags(in_tmp):
    """Issue 14.5: the run list can show each defense's key hyperparameters (tags ``hp.*``) as columns."""
    short = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--audit.membership.bootstrap", "10"]
    main(["fit", "--config", QUICKSTART, "--config", str(REPO / "conf" / "defense" / "reg.yaml"),
          "--model.init_args.l2", "0.05", *short])
    main(["fit", "--config", QUICKSTART, "--config", str(REPO / "conf" / "defense" / "relaxloss.yaml"),
          "--config", WITH_DP, "--model.init_args.alpha", "0.7", "--model.init_args.dp.noise_multiplier", "1.3",
          "--model.init_args.dp.max_grad_norm", "2", *short])
    client = mlflow.MlflowClient(f"sqlite:///{in_tmp / 'mlruns' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], order_by=["start_time ASC"])
    reg, relax = ({k: v for k, v in r.data.tags.items() if k.startswith("hp.")} for r in runs)
    assert reg == {"hp.dropout": "0.2", "hp.l2": "0.05"}
    assert relax == {"hp.alpha": "0.7", "hp.dp.target_epsilon": "4", "hp.dp.noise_multiplier": "1.3",
                     "hp.dp.max_grad_norm": "2"}
