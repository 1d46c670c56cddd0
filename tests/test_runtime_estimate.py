"""mmpiqa.workbook.runtime_estimate: the projected runtime of a run from a dry step."""

import math

import pytest

from mmpiqa.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from mmpiqa.runs.experiment import load_table
from mmpiqa.train.trainer import Trainer
from mmpiqa.workbook import zero_shot_run
from mmpiqa.workbook.runtime_estimate import RuntimeEstimate, estimate_runtime, project

DATA = DataConfig(dataset="embedded", size="small", n_splits=2, train_crops=2, test_crop="center")
TRAIN = TrainConfig(epochs=2, batch_size=16)


@pytest.fixture(scope="module")
def table():
    return load_table(DATA, progress=False)


def _config(**model):
    return RunConfig(name="t", model=ModelConfig(backbone="micro", **model), data=DATA, train=TRAIN)


def test_a_prompted_run_is_projected_from_its_counts(table):
    est = estimate_runtime(_config(visual_depth=1), table)
    assert (est.n_train, est.n_val, est.n_test) == (75, 75, 75)  # 'small': one content per part
    assert est.trains and not est.cache
    assert est.steps_per_epoch == math.ceil(75 / 16) and est.steps == 2 * est.steps_per_epoch
    assert (est.splits, est.test_crops, est.train_crops) == (2, 1, 2)
    assert min(est.step_s, est.load_s, est.load_cached_s, est.eval_crop_s) > 0
    # val after each epoch (the best one's scores are reused), then test
    assert est.eval_images == 2 * 75 + 75
    assert est.eval_s == pytest.approx(2 * est.eval_images * 1 * est.eval_crop_s)
    first, later = est.steps_per_epoch, est.steps - est.steps_per_epoch
    assert est.train_s == pytest.approx(
        2 * (est.steps * est.step_s + first * est.load_s + later * est.load_cached_s)
    )
    assert est.total_s == pytest.approx(est.train_s + est.eval_s) and est.cache_s == 0
    table_view = est.table()
    assert list(table_view.index) == ["training", "feature cache", "evaluation", "total"]
    assert table_view.loc["total", "seconds"] == pytest.approx(est.total_s)
    assert "projected runtime" in est.describe() and "10 training steps" in est.describe()


def test_splits_argument_overrides_the_config(table):
    assert estimate_runtime(_config(visual_depth=1), table, splits=1).splits == 1


def test_a_zero_shot_run_only_evaluates(table):
    est = estimate_runtime(zero_shot_run(_config()), table)
    assert not est.trains and est.steps == 0 and est.train_s == 0 and est.step_s == 0
    assert est.eval_images == 75 + 75
    assert est.total_s == pytest.approx(est.eval_s) and "zero-shot" in est.describe()


def test_a_frozen_image_tower_pays_for_the_feature_cache(table):
    est = estimate_runtime(_config(visual_depth=0), table)  # text context + xattn head learn; tower frozen
    assert est.trains and est.cache
    assert est.cache_s == pytest.approx(2 * 75 * 2 * est.eval_crop_s)
    assert est.total_s == pytest.approx(est.train_s + est.cache_s + est.eval_s)


@pytest.mark.parametrize("visual_depth", [0, 1])
def test_the_dry_step_is_the_trainers_own(table, monkeypatch, visual_depth):
    """`Trainer.step` is what is timed (warm-up and timed steps), from the feature cache when the run has one."""
    calls = []
    step = Trainer.step

    def counted(trainer, batch, epoch=0):
        calls.append(trainer.cache is not None)
        return step(trainer, batch, epoch)

    monkeypatch.setattr(Trainer, "step", counted)
    est = estimate_runtime(_config(visual_depth=visual_depth), table, steps=2, warmup=1)
    assert calls == [est.cache] * 3 and est.cache == (visual_depth == 0)


def test_on_a_cpu_the_projection_times_one_step_and_16_images(table, monkeypatch):
    """The CPU defaults: no warm-up step (a run pays its first step too) and a 16-image evaluation batch."""
    from mmpiqa.model.prompted_clip import PromptedCLIP

    steps, batches = [], []
    step, forward = Trainer.step, PromptedCLIP.forward

    def counted_step(trainer, batch, epoch=0):
        steps.append(len(batch["mos"]))
        return step(trainer, batch, epoch)

    def counted_forward(model, images, *args, **kwargs):
        batches.append(len(images))
        return forward(model, images, *args, **kwargs)

    monkeypatch.setattr(Trainer, "step", counted_step)
    monkeypatch.setattr(PromptedCLIP, "forward", counted_forward)
    estimate_runtime(_config(visual_depth=1), table)
    assert steps == [16]  # one timed step of batch_size images
    assert batches[:2] == [1, 16]  # an untimed one-image pass, then the timed batch (1 view each)


def test_the_estimate_is_plain_arithmetic():
    est = RuntimeEstimate(step_s=2.0, load_s=1.0, load_cached_s=0.0, eval_crop_s=0.01, n_train=100, n_val=10,
                          n_test=20, epochs=3, batch_size=32, splits=2, test_crops=3, train_crops=4, trains=True,
                          cache=False)  # fmt: skip
    assert est.steps == 12
    assert est.train_s == 2 * (12 * 2.0 + 4 * 1.0)
    assert est.eval_s == pytest.approx(2 * (3 * 10 + 20) * 3 * 0.01)


def test_several_runs_are_projected_one_row_each(table):
    configs = [_config(visual_depth=1).replace(name="deep"), zero_shot_run(_config())]
    frame = project(configs, table)
    deep, zero = (f"{c.name}-{c.key()}" for c in configs)  # the run folders' names
    assert list(frame.index) == [deep, zero]
    assert frame.loc[deep, "steps per split"] == 2 * math.ceil(75 / 16)
    assert frame.loc[zero, "steps per split"] == 0
    assert (frame["seconds"] > 0).all()
    assert frame.attrs["summary"].startswith("projected runtime of 2 run(s) on micro: ")


def test_arms_that_differ_only_in_their_training_fraction_share_one_dry_step(table, monkeypatch):
    from mmpiqa.workbook import runtime_estimate

    timed = []
    measure = runtime_estimate.estimate_runtime
    monkeypatch.setattr(runtime_estimate, "estimate_runtime", lambda c, t: timed.append(c) or measure(c, t))
    full = _config(visual_depth=1)
    fifth = full.replace(data=full.data.replace(train_fraction=0.2))
    frame = project([full, fifth], table)
    assert timed == [full]
    steps = frame["steps per split"].tolist()
    assert steps == [2 * math.ceil(75 / 16), 2 * math.ceil(15 / 16)]  # a fifth of one content's 75 images
    assert frame["seconds"].iloc[1] < frame["seconds"].iloc[0]  # the same unit costs, fewer steps
