"""IndRNN, the independently recurrent network (Li et al., 2018), in haste's form: one gate
block, and a recurrent weight that is one scale per unit instead of a matrix.

    h_t = act(W x_t + b + u * h_{t-1})        (u * h_{t-1} element by element)

``W`` is ``weight_ih`` (H, I) (haste's ``kernel`` transposed), ``b`` is ``bias_ih`` and ``u``
the extra parameter ``recurrent_scale`` (H,), haste's name and layout (initialised here
U(-1/sqrt(H), 1/sqrt(H)), where haste draws U(-1, 1)). There is no ``W_hh`` and no
``b_hh`` (``recurrent=False``): the engine runs no recurrent GEMM, and h_{t-1} reaches the
gate through ``s_prev``. ``act`` is the layer's ``activation`` (tanh by default, as in
haste; the paper also uses relu); ``clip`` clamps the pre-activation.
"""

from lstm_numba.contract import ExtraParam, Gate, blocks, clamp, clip_grad, pointwise


@pointwise
def forward(gx, gh, s_prev, p, clip, act, ract, s_next):
    u = blocks(p, 1)[0]
    for j in range(s_next.size):
        s_next[j] = act(clamp(gx[j] + gh[j] + u[j] * s_prev[j], clip))[0]


@pointwise
def backward(gx, gh, s_prev, p, clip, act, ract, ds_next, dgx, dgh, ds_prev, dp):
    u = blocks(p, 1)[0]
    du = blocks(dp, 1)[0]
    # dgh would equal dgx: an additive gate leaves it to the engine (see Gate.additive)
    for j in range(ds_next.size):
        h_prev = s_prev[j]
        z = gx[j] + gh[j] + u[j] * h_prev
        dz = ds_next[j] * act(clamp(z, clip))[1] * clip_grad(z, clip)
        dgx[j] = dz
        ds_prev[j] = dz * u[j]
        du[j] += dz * h_prev


gate = Gate(
    n_blocks=1,
    state_names=("h",),
    forward=forward,
    backward=backward,
    extra_params=(ExtraParam("recurrent_scale", blocks=1, init="uniform"),),
    elementwise=True,
    additive=True,
    recurrent=False,
    doc=__doc__,
    description="IndRNN, one recurrent scale per unit (Li et al. 2018), haste's IndRNN form",
)
