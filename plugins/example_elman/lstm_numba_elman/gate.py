"""The Elman RNN cell as an lstm-numba gate plugin: one gate block, state h only.

    h_t = act(clip(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh))

With ``act`` = tanh (the layer's default ``activation``) it is ``torch.nn.RNN``, whose
weights load unchanged (``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``).
The gate declares ``elementwise`` (unit j reads only unit j) and ``additive`` (it reads gx
and gh only through their sum), so the engine may split the hidden units across cores and
keeps one pre-activation array; its backward may then leave ``dgh`` unwritten.
"""

from lstm_numba.contract import Gate, clamp, clip_grad, pointwise, zero


@pointwise
def forward(gx, gh, s_prev, p, clip, act, ract, s_next):
    for j in range(s_next.size):
        s_next[j] = act(clamp(gx[j] + gh[j], clip))[0]


@pointwise
def backward(gx, gh, s_prev, p, clip, act, ract, ds_next, dgx, dgh, ds_prev, dp):
    for j in range(ds_next.size):
        z = gx[j] + gh[j]
        dgx[j] = ds_next[j] * act(clamp(z, clip))[1] * clip_grad(z, clip)
        ds_prev[j] = zero(z)  # h_{t-1} acts only through gh; the engine adds dgh @ W_hh


gate = Gate(n_blocks=1, state_names=("h",), forward=forward, backward=backward, elementwise=True, additive=True,
            doc=__doc__)
