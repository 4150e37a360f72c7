"""Run by test_ddp_gan.py as a script under 2-process gloo DDP: a GAN-family module (``pigan``, ``gan``, ``dpgan``)
fits tiny digits with the GAN membership and fidelity audits. Each rank r saves OUT.rank<r>.pt: its weights before
and after the fit (the ranks see different batches and draw different noise, so equal weights mean every network's
gradients were all-reduced), its optimizer steps, how many audit results it emitted and their metrics.

Usage: ddp_gan_worker.py OUT MODEL CACHE_DIR STRATEGY [local]"""

import sys

import torch
from lightning.pytorch import Callback, Trainer, seed_everything

import lightning_privacy  # noqa: F401
from lightning_privacy.callbacks.gan_fidelity import GanFidelity, GanFidelityConfig
from lightning_privacy.callbacks.gan_membership import GanMembershipAudit, GanMembershipAuditConfig
from lightning_privacy.data.digits import Digits


class CountSteps(Callback):
    """Counts optimizer steps; with ``local`` (the control), DDP's buckets are not all-reduced (a communication
    hook that returns each rank's own gradients)."""

    def __init__(self, local: bool) -> None:
        self.steps, self.local = 0, local

    def on_fit_start(self, trainer, pl_module) -> None:
        for opt in trainer.optimizers:
            opt.register_step_post_hook(lambda *_a: setattr(self, "steps", self.steps + 1))
        if self.local:
            def own_gradients(state, bucket):
                future = torch.futures.Future()
                future.set_result(bucket.buffer())
                return future

            trainer.strategy.model.register_comm_hook(None, own_gradients)


if __name__ == "__main__":
    seed_everything(0)
    kind, cache = sys.argv[2], sys.argv[3]
    dm = Digits(protocol="pooled", members=64, reference=24, shadow=60, validation=20, nonmembers=None,
                image_size=16, batch_size=8)
    if kind == "pigan":
        from lightning_privacy.defenses.gan.pigan import PIGAN

        model = PIGAN(input_shape=(1, 16, 16), num_codes=2, lam=1.0, warmup_epochs=0, q_pretrain_epochs=1)
    elif kind == "dpgan":
        from lightning_privacy.defenses.gan.dpgan import DPGAN
        from lightning_privacy.privacy.config import DPConfig

        model = DPGAN(input_shape=(1, 16, 16), dp=DPConfig(noise_multiplier=1.0, delta=1e-4, seed=7))
    else:
        from lightning_privacy.defenses.gan.gan import GAN

        model = GAN(input_shape=(1, 16, 16))
    counter = CountSteps(local=sys.argv[5:] == ["local"])
    audits = [GanMembershipAudit(GanMembershipAuditConfig(mc_generated=100, mc_samples=10, mc_repeats=2, bootstrap=0,
                                                          pca_components=5)),
              GanFidelity(GanFidelityConfig(samples=20, classifier_epochs=1, downstream_samples=20,
                                            downstream_epochs=1, is_splits=2, cache_dir=cache))]
    trainer = Trainer(accelerator="cpu", devices=2, strategy=sys.argv[4], logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, callbacks=[*audits, counter],
                      num_sanity_val_steps=0, limit_val_batches=0, max_epochs=1, limit_train_batches=3,
                      use_distributed_sampler=kind != "dpgan")
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    trainer.fit(model, datamodule=dm)
    torch.save({"initial": initial, "final": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "steps": counter.steps, "emitted": [len(a.audit_results) for a in audits],
                "metrics": {k: v for a in audits for r in a.audit_results for k, v in r.metrics.items()},
                "dp": getattr(model, "dp_summary", {})}, f"{sys.argv[1]}.rank{trainer.global_rank}.pt")
