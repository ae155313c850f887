"""Optimizers, gradient clipping and schedules against torch.optim, update for update."""

import json

import numpy as np
import pytest

from lstm_numba.training.optim import SGD, Adam, AdamW, clip_grad_norm, make_optimizer
from lstm_numba.training.schedules import CosineAnnealingLR, StepLR, make_schedule

STEPS = 25
SHAPES = {"weight_ih_l0": (8, 3), "weight_hh_l0": (8, 2), "bias_ih_l0": (8,),
          "head.weight": (1, 2)}


def make_params(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}


def grads_at(params, step):
    """Deterministic gradients that depend on the parameters (a quadratic plus noise)."""
    rng = np.random.default_rng(1000 + step)
    return {k: (0.5 * p + rng.standard_normal(p.shape)).astype(p.dtype) for k, p in params.items()}


def run_ours(cls, kw, steps=STEPS, dtype=np.float64):
    params = make_params(dtype)
    opt = cls(params, **kw)
    for t in range(steps):
        opt.step(grads_at(params, t))
    return params


def run_torch(name, kw, steps=STEPS):
    torch = pytest.importorskip("torch")
    params = make_params()
    tparams = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    opt = cls(list(tparams.values()), foreach=False, **kw)
    for t in range(steps):
        grads = grads_at({k: v.detach().numpy() for k, v in tparams.items()}, t)
        for k, p in tparams.items():
            p.grad = torch.from_numpy(grads[k])
        opt.step()
    return {k: v.detach().numpy() for k, v in tparams.items()}


def assert_close(ours, ref, rtol=1e-12):
    for k in ref:
        np.testing.assert_allclose(ours[k], ref[k], rtol=rtol, atol=rtol, err_msg=k)


CASES = [
    ("sgd", SGD, dict(lr=0.05)),
    ("sgd", SGD, dict(lr=0.05, momentum=0.9)),
    ("sgd", SGD, dict(lr=0.05, momentum=0.9, dampening=0.3)),
    ("sgd", SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("sgd", SGD, dict(lr=0.05, momentum=0.8, weight_decay=0.01, nesterov=True)),
    ("sgd", SGD, dict(lr=0.05, weight_decay=0.1)),
    ("adam", Adam, dict(lr=0.01)),
    ("adam", Adam, dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6)),
    ("adam", Adam, dict(lr=0.01, weight_decay=0.05)),
    ("adam", Adam, dict(lr=0.01, amsgrad=True)),
    ("adam", Adam, dict(lr=0.01, betas=(0.3, 0.9), weight_decay=0.05, amsgrad=True)),
    ("adamw", AdamW, dict(lr=0.01)),
    ("adamw", AdamW, dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("adamw", AdamW, dict(lr=0.01, weight_decay=0.0)),
]


@pytest.mark.parametrize("name,cls,kw", CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_matches_torch_float64(name, cls, kw):
    ref = run_torch(name, kw)
    assert_close(run_ours(cls, kw), ref)
    assert_close(run_ours(lambda params, **k: make_optimizer(name, params, **k), kw), ref)


@pytest.mark.parametrize("name,cls,kw", CASES[1::3], ids=[c[0] for c in CASES[1::3]])
def test_float32_stays_float32_and_close(name, cls, kw):
    params = run_ours(cls, kw, dtype=np.float32)
    assert all(p.dtype == np.float32 for p in params.values())
    assert_close(params, run_ours(cls, kw), rtol=1e-4)


def test_updates_in_place():
    params = make_params()
    arrays = dict(params)
    Adam(params, lr=0.1).step(grads_at(params, 0))
    assert all(params[k] is arrays[k] for k in params)
    assert not np.allclose(params["head.weight"], make_params()["head.weight"])


@pytest.mark.parametrize("cls,kw", [(SGD, dict(lr=0.05, momentum=0.9, dampening=0.2)),
                                     (SGD, dict(lr=0.05)),
                                     (Adam, dict(lr=0.01, amsgrad=True)),
                                     (AdamW, dict(lr=0.01))])
def test_state_dict_resume_is_exact(cls, kw):
    full = run_ours(cls, kw, steps=20)
    params = make_params()
    opt = cls(params, **kw)
    for t in range(10):
        opt.step(grads_at(params, t))
    state = json.loads(json.dumps({k: v for k, v in opt.state_dict().items()
                                   if not isinstance(v, np.ndarray)}))
    state.update({k: v for k, v in opt.state_dict().items() if isinstance(v, np.ndarray)})
    resumed = {k: v.copy() for k, v in params.items()}
    opt2 = cls(resumed, lr=123.0)
    opt2.load_state_dict(state)
    assert opt2.lr == kw["lr"]
    for t in range(10, 20):
        opt2.step(grads_at(resumed, t))
    for k in full:
        np.testing.assert_array_equal(resumed[k], full[k])


def test_state_dict_is_a_copy_and_flat():
    params = make_params()
    opt = Adam(params)
    opt.step(grads_at(params, 0))
    state = opt.state_dict()
    assert state["type"] == "adam" and state["num_steps"] == 1 and state["betas"] == [0.9, 0.999]
    assert set(k for k in state if "/" in k) == {f"{b}/{k}" for b in ("exp_avg", "exp_avg_sq")
                                                 for k in SHAPES}
    state["exp_avg/head.weight"][...] = 0
    assert np.any(opt.buffers["exp_avg"]["head.weight"] != 0)


def test_load_state_dict_rejects_bad_state_and_leaves_optimizer_unchanged():
    params = make_params()
    opt = Adam(params, lr=0.5)
    state = Adam(make_params(), lr=0.1, amsgrad=True).state_dict()
    with pytest.raises(ValueError, match="'adamw', not 'adam'"):
        opt.load_state_dict({**state, "type": "adamw"})
    del state["max_exp_avg_sq/head.weight"]
    with pytest.raises(ValueError, match="does not cover"):
        opt.load_state_dict(state)
    assert opt.lr == 0.5 and opt.amsgrad is False
    bad = Adam(make_params(), lr=0.1).state_dict()
    bad["exp_avg/head.weight"] = np.zeros((3, 3))
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict(bad)
    with pytest.raises(ValueError, match="unexpected entry 'bogus'"):
        opt.load_state_dict({**Adam(make_params()).state_dict(), "bogus": 1})


def test_grads_must_match_params():
    params = make_params()
    opt = SGD(params, lr=0.1)
    grads = grads_at(params, 0)
    with pytest.raises(ValueError, match=r"missing \['head.weight'\]"):
        opt.step({k: v for k, v in grads.items() if k != "head.weight"})
    with pytest.raises(ValueError, match="shape"):
        opt.step({**grads, "head.weight": np.zeros(3)})
    with pytest.raises(ValueError, match="dtype"):
        opt.step({**grads, "head.weight": grads["head.weight"].astype(np.float32)})


def test_invalid_hyperparameters():
    with pytest.raises(ValueError, match="Nesterov"):
        SGD(make_params(), lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="beta"):
        Adam(make_params(), betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="learning rate"):
        AdamW(make_params(), lr=-1)
    with pytest.raises(ValueError, match="float32 or float64"):
        SGD({"w": np.zeros(3, dtype=np.int64)}, lr=0.1)


def test_factories_list_valid_names():
    with pytest.raises(ValueError, match="valid names: adam, adamw, sgd"):
        make_optimizer("rmsprop", make_params(), lr=0.1)
    with pytest.raises(ValueError, match="valid names: cosine, step"):
        make_schedule("linear", SGD(make_params(), lr=0.1))
    assert isinstance(make_optimizer("adamw", make_params(), lr=0.1, weight_decay=0.2), AdamW)
    assert isinstance(make_schedule("step", SGD(make_params(), lr=0.1), step_size=2), StepLR)


# ---------------------------------------------------------------- gradient clipping

@pytest.mark.parametrize("max_norm", [0.5, 3.0, 1e6])
def test_clip_grad_norm_matches_torch(max_norm):
    torch = pytest.importorskip("torch")
    grads = grads_at(make_params(), 0)
    tparams = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True)
               for g in grads.values()]
    for p, g in zip(tparams, grads.values()):
        p.grad = torch.from_numpy(g.copy())
    ref_norm = torch.nn.utils.clip_grad_norm_(tparams, max_norm, foreach=False)
    total = clip_grad_norm(grads, max_norm)
    assert total == pytest.approx(float(ref_norm), rel=1e-14)
    for p, g in zip(tparams, grads.values()):
        np.testing.assert_allclose(g, p.grad.numpy(), rtol=1e-14)


def test_clip_grad_norm_in_place_and_bounded():
    grads = grads_at(make_params(), 1)
    arrays = dict(grads)
    before = np.sqrt(sum(float(np.sum(g * g)) for g in grads.values()))
    assert clip_grad_norm(grads, 1.0) == pytest.approx(before, rel=1e-14)
    after = np.sqrt(sum(float(np.sum(g * g)) for g in grads.values()))
    assert after == pytest.approx(1.0, rel=1e-5)
    assert all(grads[k] is arrays[k] for k in grads)
    assert clip_grad_norm({}, 1.0) == 0.0


def test_clip_grad_norm_non_finite_like_torch():
    grads = {"a": np.array([1.0, np.nan]), "b": np.array([2.0])}
    assert np.isnan(clip_grad_norm(grads, 1.0))
    assert np.isnan(grads["b"]).all()


# ---------------------------------------------------------------- schedules

SCHEDULE_CASES = [
    ("step", dict(step_size=3, gamma=0.5), "StepLR"),
    ("step", dict(step_size=1, gamma=0.9), "StepLR"),
    ("cosine", dict(T_max=10), "CosineAnnealingLR"),
    ("cosine", dict(T_max=7, eta_min=0.01), "CosineAnnealingLR"),
]


@pytest.mark.parametrize("name,kw,torch_name", SCHEDULE_CASES)
def test_schedules_match_torch(name, kw, torch_name):
    torch = pytest.importorskip("torch")
    topt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.2)
    tsched = getattr(torch.optim.lr_scheduler, torch_name)(topt, **kw)
    opt = SGD(make_params(), lr=0.2)
    sched = make_schedule(name, opt, **kw)
    for epoch in range(30):
        assert opt.lr == pytest.approx(topt.param_groups[0]["lr"], rel=1e-12, abs=1e-15), epoch
        topt.step()
        tsched.step()
        sched.step()


def test_schedule_drives_adam_like_torch():
    torch = pytest.importorskip("torch")
    params = make_params()
    tparams = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    topt = torch.optim.AdamW(list(tparams.values()), lr=0.05, foreach=False)
    tsched = torch.optim.lr_scheduler.CosineAnnealingLR(topt, T_max=8, eta_min=1e-3)
    opt = AdamW(params, lr=0.05)
    sched = CosineAnnealingLR(opt, T_max=8, eta_min=1e-3)
    for t in range(STEPS):
        opt.step(grads_at(params, t))
        tgrads = grads_at({k: p.detach().numpy() for k, p in tparams.items()}, t)
        for k, p in tparams.items():
            p.grad = torch.from_numpy(tgrads[k])
        topt.step()
        sched.step()
        tsched.step()
    assert_close(params, {k: v.detach().numpy() for k, v in tparams.items()})


def test_schedule_state_dict_resumes():
    opt = SGD(make_params(), lr=1.0)
    sched = StepLR(opt, step_size=2, gamma=0.1)
    for _ in range(5):
        sched.step()
    state = json.loads(json.dumps(sched.state_dict()))
    opt2 = SGD(make_params(), lr=1.0)
    sched2 = StepLR(opt2, step_size=7, gamma=0.5)
    sched2.load_state_dict(state)
    assert (sched2.last_epoch, sched2.step_size, sched2.gamma) == (5, 2, 0.1)
    sched.step()
    sched2.step()
    assert opt2.lr == opt.lr == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="'step', not 'cosine'"):
        CosineAnnealingLR(opt, T_max=3).load_state_dict(state)
