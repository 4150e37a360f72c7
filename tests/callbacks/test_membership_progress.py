"""Each long phase of a membership audit leaves one line in the log (issue 15.8): helper fits (with cache hits),
signal collection, per-sample gradients, the bootstrap."""

import logging
import re

from lightning.pytorch import Trainer, seed_everything

from lightning_privacy.callbacks.membership import MembershipAudit, MembershipAuditConfig
from lightning_privacy.data.digits import Digits
from lightning_privacy.defenses.erm import ERM


def _audit(tmp_path) -> None:
    seed_everything(0)
    dm = Digits(test_fraction=0.5, members=200, shadow=250, reference=250)
    audit = MembershipAudit(MembershipAuditConfig(
        attacks=["loss", "grad_x_l2", "lira_online"], num_shadows=1, num_references=2, shadow_epochs=1,
        bootstrap=5, max_samples_per_role=100, cache_dir=str(tmp_path / "bank"), artifacts=False))
    trainer = Trainer(max_epochs=1, callbacks=[audit], logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)
    trainer.test(ERM(num_classes=10, input_shape=dm.input_shape), datamodule=dm, verbose=False)


def _lines(caplog) -> list[str]:
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("lightning_privacy")]
    caplog.clear()
    return lines


def test_each_audit_phase_leaves_one_line_in_the_log(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="lightning_privacy")
    _audit(tmp_path)
    lines = _lines(caplog)
    expected = [
        r"audit: trained 3 of 3 helper models \(1 shadow, 2 reference\) in \d+\.\d s \(cache: 0 hits\)",
        r"audit: collected signals of 4 models on \d+ samples in \d+\.\d s",
        r"audit: per-sample gradients of 2 models on \d+ samples in \d+\.\d s",  # the target and the shadow
        r"audit: bootstrap 5 resamples × 3 attacks in \d+\.\d s",
    ]
    assert len(lines) == len(expected), lines
    for pattern, line in zip(expected, lines):
        assert re.fullmatch(pattern, line), (pattern, line)
    _audit(tmp_path)  # the same helpers again: all from the cache
    assert re.fullmatch(r"audit: trained 0 of 3 helper models .* \(cache: 3 hits\)", _lines(caplog)[0])
