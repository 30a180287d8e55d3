"""Learning-rate schedules: values by hand, the per-batch callback, and exact resume.

The models are one Dense layer on 8 fixed samples (batch 2: 4 steps per epoch), so a
fit takes well under a second on a CPU and is bit-for-bit repeatable.
"""

import json
import math

import keras
import numpy as np
import pytest

from kseg.errors import KsegError
from kseg.training.schedules import SCHEDULES, StepSchedule, lr_at, make_schedule

STEPS = 4  # 8 samples, batch 2
X = np.linspace(-1, 1, 24, dtype="float32").reshape(8, 3)
Y = (X @ np.array([[0.5], [-1.0], [2.0]], dtype="float32") + 0.25).astype("float32")


# ---- lr_at by hand ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "step, expected",
    [
        (0, 0.1),  # t = 0: 0.1 * 1^2
        (5, 0.025),  # t = 5/10 = 0.5: 0.1 * 0.5^2
        (9, 0.001),  # t = 0.9, the last step that runs: 0.1 * 0.1^2
        (10, 0.0),  # t = 1: 0.1 * 0^2 (one past the end)
        (12, 0.0),  # past the end: t clamped to 1
    ],
)
def test_poly_by_hand(step, expected):
    assert lr_at("poly", step, total_steps=10, base_lr=0.1, power=2) == pytest.approx(expected)


def test_poly_default_power():
    # 0.1 * (1 - 5/10) ** 0.9 = 0.1 * exp(0.9 * ln 0.5) = 0.1 * exp(-0.6238325) = 0.05358867
    assert lr_at("poly", 5, 10, 0.1) == pytest.approx(0.05358867, rel=1e-6)


@pytest.mark.parametrize(
    "step, expected",
    [
        (0, 0.025),  # warmup W = 4: 0.1 * (0 + 1) / 4
        (1, 0.05),  # 0.1 * 2 / 4
        (3, 0.1),  # 0.1 * 4 / 4: the last warmup step is at base
        (4, 0.1),  # decay t = (4 - 4) / (14 - 4) = 0: 0.1 * 1^2
        (9, 0.025),  # t = 5/10: 0.1 * 0.5^2
        (13, 0.001),  # t = 9/10: 0.1 * 0.1^2
    ],
)
def test_poly_with_warmup_by_hand(step, expected):
    assert lr_at("poly", step, 14, 0.1, warmup_steps=4, power=2) == pytest.approx(expected)


@pytest.mark.parametrize(
    "step, warmup, expected",
    [
        (0, 0, 1.0),  # t = 0: 0.2 + 0.8 * (1 + cos 0) / 2 = 0.2 + 0.8
        (2, 0, 0.88284271),  # t = 2/8: 0.2 + 0.8 * (1 + 0.70710678) / 2 = 0.2 + 0.68284271
        (4, 0, 0.6),  # t = 4/8: 0.2 + 0.8 * (1 + 0) / 2
        (8, 0, 0.2),  # t = 1: 0.2 + 0.8 * (1 - 1) / 2 = min_lr
        (0, 2, 0.5),  # warmup W = 2: 1.0 * 1/2
        (1, 2, 1.0),  # 1.0 * 2/2
        (2, 2, 1.0),  # decay t = (2 - 2) / (10 - 2) = 0
        (6, 2, 0.6),  # t = 4/8, as above
    ],
)
def test_cosine_by_hand(step, warmup, expected):
    total = 8 + warmup
    assert lr_at("cosine", step, total, 1.0, warmup_steps=warmup, min_lr=0.2) == pytest.approx(expected)


def test_plateau_only_warms_up():
    # 0.1 * 1/4, 2/4, 3/4, 4/4, then the plateau callback owns the rate
    assert [lr_at("plateau", s, 20, 0.1, warmup_steps=4) for s in range(6)] == pytest.approx(
        [0.025, 0.05, 0.075, 0.1, None, None]
    )
    assert lr_at("plateau", 0, 20, 0.1) is None


@pytest.mark.parametrize("schedule", ["poly", "cosine"])
@pytest.mark.parametrize("warmup", [0, 1, 7])
def test_warmup_linear_then_non_increasing(schedule, warmup):
    base, total = 0.01, 40
    rates = np.array(
        [lr_at(schedule, s, total, base, warmup_steps=warmup, min_lr=1e-4) for s in range(total)]
    )
    if warmup:
        np.testing.assert_allclose(np.diff(rates[:warmup]), base / warmup, rtol=1e-9)
        assert rates[0] == pytest.approx(base / warmup)
    assert rates.max() == pytest.approx(base)
    assert rates[warmup] == pytest.approx(base)
    assert np.all(np.diff(rates[warmup:]) <= 0)
    assert rates[-1] > 1e-4  # min_lr only at step == total, which does not run


# ---- the callback inside fit ------------------------------------------------------------


class RateLog(keras.callbacks.Callback):
    """Per batch: (global step, the rate the step runs at, optimizer.iterations)."""

    def __init__(self):
        super().__init__()
        self.rows = []
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        it = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        self.rows.append((self.epoch * STEPS + batch, lr, it))


def tiny_model(optimizer="adam", lr=0.05):
    keras.utils.set_random_seed(7)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, name="dense")])
    opt = keras.optimizers.Adam(lr) if optimizer == "adam" else keras.optimizers.SGD(lr)
    model.compile(optimizer=opt, loss="mse")
    return model


def run_fit(model, callbacks, epochs, initial_epoch=0):
    log = RateLog()
    model.fit(X, Y, batch_size=2, epochs=epochs, initial_epoch=initial_epoch,
              shuffle=False, verbose=0, callbacks=[*callbacks, log])  # fmt: skip
    return log.rows


def expected(schedule, steps, total, base, warmup):
    # The variable is float32: the rate a step runs at is lr_at rounded to float32.
    return [float(np.float32(lr_at(schedule, s, total, base, warmup_steps=warmup))) for s in steps]


@pytest.mark.parametrize("schedule", ["poly", "cosine"])
def test_callback_sets_rate_every_batch(schedule):
    model = tiny_model()
    cbs = make_schedule(schedule, 0.05, epochs=3, steps_per_epoch=STEPS, warmup_epochs=0.75)  # 3 steps
    rows = run_fit(model, cbs, epochs=3)
    steps = [r[0] for r in rows]
    assert steps == list(range(12))
    assert [r[1] for r in rows] == expected(schedule, steps, 12, 0.05, 3)
    assert [r[2] for r in rows] == steps  # the global step is also optimizer.iterations
    snap = cbs[0].snapshot()
    assert json.loads(json.dumps(snap)) == snap
    assert snap["step"] == 12 and snap["total_steps"] == 12 and snap["warmup_steps"] == 3


def test_steps_per_epoch_from_fit():
    model = tiny_model()
    cb = StepSchedule("poly", 0.05, epochs=2, warmup_steps=2)  # steps_per_epoch from params["steps"]
    rows = run_fit(model, [cb], epochs=2)
    assert cb.steps_per_epoch == STEPS
    assert [r[1] for r in rows] == expected("poly", range(8), 8, 0.05, 2)


def test_rate_takes_effect():
    """fit with the callback == a train_on_batch loop that sets each rate by hand (SGD)."""
    a = tiny_model("sgd")
    run_fit(a, make_schedule("cosine", 0.05, 2, STEPS, warmup_epochs=0.5), epochs=2)
    b = tiny_model("sgd")
    for step in range(2 * STEPS):
        b.optimizer.learning_rate = lr_at("cosine", step, 2 * STEPS, 0.05, warmup_steps=2)
        i = step % STEPS
        b.train_on_batch(X[2 * i : 2 * i + 2], Y[2 * i : 2 * i + 2])
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(wa, wb, rtol=1e-6)
    # and differs from a constant rate, so the check has teeth
    c = tiny_model("sgd")
    run_fit(c, [], epochs=2)
    assert not np.allclose(a.get_weights()[0], c.get_weights()[0])


def test_plateau_warmup_then_hands_over():
    """After warmup the callback leaves the rate alone; a plateau-like halving sticks."""

    class Halve(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.optimizer.learning_rate = float(self.model.optimizer.learning_rate) / 2

    assert make_schedule("plateau", 0.1, 3, STEPS) == []
    cbs = make_schedule("plateau", 0.1, 3, STEPS, warmup_epochs=1)
    rows = run_fit(tiny_model(lr=0.1), [*cbs, Halve()], epochs=3)
    f32 = lambda v: float(np.float32(v))  # noqa: E731
    # epoch 1: ramp 0.1 * k/4; its halving (0.1 -> 0.05) then stays; epoch 3: 0.025
    assert [r[1] for r in rows] == [f32(v) for v in [0.025, 0.05, 0.075, 0.1] + [0.05] * 4 + [0.025] * 4]


# ---- resume ------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", ["poly", "cosine", "plateau"])
def test_resume_is_exact(schedule, tmp_path):
    """4 epochs in one go == 2 epochs, a rebuild from last.keras + snapshot, 2 more."""
    kwargs = dict(base_lr=0.05, epochs=4, steps_per_epoch=STEPS, warmup_epochs=1.5)
    whole = tiny_model()
    whole_rows = run_fit(whole, make_schedule(schedule, **kwargs), epochs=4)

    first = tiny_model()
    cbs = make_schedule(schedule, **kwargs)
    rows = run_fit(first, cbs, epochs=2)
    first.save(tmp_path / "last.keras")
    state = json.loads(
        json.dumps({"lr": float(first.optimizer.learning_rate), "schedule": cbs[0].snapshot()})
    )
    del first

    # As kseg's fit resumes: a fresh model, its optimizer built, the checkpoint loaded.
    model = tiny_model()
    model.optimizer.build(model.trainable_variables)
    model.load_weights(tmp_path / "last.keras")
    model.optimizer.learning_rate = state["lr"]
    cbs = make_schedule(schedule, **kwargs, restore=state["schedule"])
    rows += run_fit(model, cbs, epochs=4, initial_epoch=2)

    assert rows == whole_rows  # same global steps, rates and optimizer.iterations
    assert cbs[0].changes == []
    assert cbs[0].snapshot()["step"] == 16
    for w, v in zip(whole.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(w, v)


def test_extended_run_is_detected_and_recomputed():
    """A finished 2-epoch run extended to 4: the decay is recomputed over 16 steps."""
    done = make_schedule("poly", 0.05, 2, STEPS)[0]
    run_fit(tiny_model(), [done], epochs=2)
    more = make_schedule("poly", 0.05, 4, STEPS, restore=done.snapshot())[0]
    rows = run_fit(tiny_model(), [more], epochs=4, initial_epoch=2)
    assert more.changes == [("total_steps", 8, 16)]
    # step 8 of 16: 0.05 * (1 - 8/16) ** 0.9, well above the old run's last rate (step 7 of 8)
    assert rows[0][1] == pytest.approx(0.05 * 0.5**0.9, rel=1e-6)
    assert rows[0][1] > 3 * lr_at("poly", 7, 8, 0.05)  # 0.0268 vs 0.05 * (1/8) ** 0.9 = 0.0077


# ---- other backends ----------------------------------------------------------------------


JAX_CHECK = """
import numpy as np, keras
from kseg.training.schedules import lr_at, make_schedule

X = np.linspace(-1, 1, 24, dtype="float32").reshape(8, 3)
Y = X.sum(axis=1, keepdims=True)
def model():
    keras.utils.set_random_seed(7)
    m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    m.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    return m

class Log(keras.callbacks.Callback):
    rows = []
    def on_train_batch_begin(self, batch, logs=None):
        self.rows.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))

a = model()
a.fit(X, Y, batch_size=2, epochs=2, shuffle=False, verbose=0,
      callbacks=[*make_schedule("poly", 0.05, 2, 4, warmup_epochs=0.5), Log()])
want = [lr_at("poly", s, 8, 0.05, warmup_steps=2) for s in range(8)]
assert Log.rows == [float(np.float32(v)) for v in want], Log.rows
b = model()
for s in range(8):
    b.optimizer.learning_rate = want[s]
    i = s % 4
    b.train_on_batch(X[2 * i : 2 * i + 2], Y[2 * i : 2 * i + 2])
for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
    np.testing.assert_allclose(wa, wb, rtol=1e-6)
print("ok", keras.backend.backend())
"""


def test_jax_backend(run_python):
    """On JAX the rate lives in the jitted loop's state; the callback must sync it."""
    pytest.importorskip("jax")
    assert run_python(JAX_CHECK, backend="jax").split() == ["ok", "jax"]


# ---- errors ------------------------------------------------------------------------------


def test_bad_schedule_name():
    for call in (
        lambda: lr_at("step", 0, 10, 0.1),
        lambda: make_schedule("step", 0.1, 10, STEPS),
        lambda: StepSchedule("step", 0.1, 10, STEPS),
    ):
        with pytest.raises(KsegError) as exc:
            call()
        message = str(exc.value)
        assert "'step'" in message and ", ".join(SCHEDULES) in message and "\n" not in message


@pytest.mark.parametrize("warmup", [-1, -0.5, math.nan])
def test_bad_warmup(warmup):
    with pytest.raises(KsegError, match=r"warmup_epochs=.*>= 0") as exc:
        make_schedule("poly", 0.1, 10, STEPS, warmup_epochs=warmup)
    assert str(warmup) in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(KsegError, match="warmup_steps=-1"):
        StepSchedule("poly", 0.1, 10, STEPS, warmup_steps=-1)


def test_warmup_longer_than_run():
    cbs = make_schedule("cosine", 0.1, 2, STEPS, warmup_epochs=2)
    with pytest.raises(KsegError, match="no steps to decay"):
        run_fit(tiny_model(), cbs, epochs=2)
