"""Built-in activations, with ONNX's ``alpha`` and ``beta`` where ONNX gives them.

Each derivative is written from the input ``x`` and the output ``y``, whichever is cheaper.
"""

from lstm_numba.contract import (
    Activation,
    fast_exp,
    fast_log1p,
    fast_sigmoid,
    fast_tanh,
    one,
    pointwise,
    zero,
)


@pointwise
def _sigmoid(x, alpha, beta):
    return fast_sigmoid(x)


@pointwise
def _sigmoid_grad(x, y, alpha, beta):
    return y * (one(y) - y)


@pointwise
def _tanh(x, alpha, beta):
    return fast_tanh(x)


@pointwise
def _tanh_grad(x, y, alpha, beta):
    return one(y) - y * y


@pointwise
def _hard_sigmoid(x, alpha, beta):
    return min(max(alpha * x + beta, zero(x)), one(x))


@pointwise
def _hard_sigmoid_grad(x, y, alpha, beta):
    z = alpha * x + beta
    return alpha if zero(x) < z < one(x) else zero(x)


@pointwise
def _relu(x, alpha, beta):
    return max(x, zero(x))


@pointwise
def _relu_grad(x, y, alpha, beta):
    return one(x) if x > zero(x) else zero(x)


@pointwise
def _leaky_relu(x, alpha, beta):
    return x if x >= zero(x) else alpha * x


@pointwise
def _leaky_relu_grad(x, y, alpha, beta):
    return one(x) if x >= zero(x) else alpha


@pointwise
def _elu(x, alpha, beta):
    return x if x >= zero(x) else alpha * (fast_exp(x) - one(x))


@pointwise
def _elu_grad(x, y, alpha, beta):
    return one(x) if x >= zero(x) else y + alpha


@pointwise
def _softsign(x, alpha, beta):
    return x / (one(x) + abs(x))


@pointwise
def _softsign_grad(x, y, alpha, beta):
    d = one(x) + abs(x)
    return one(x) / (d * d)


@pointwise
def _softplus(x, alpha, beta):
    return max(x, zero(x)) + fast_log1p(fast_exp(-abs(x)))


@pointwise
def _softplus_grad(x, y, alpha, beta):
    return fast_sigmoid(x)


@pointwise
def _scaled_tanh(x, alpha, beta):
    return alpha * fast_tanh(beta * x)


@pointwise
def _scaled_tanh_grad(x, y, alpha, beta):
    t = fast_tanh(beta * x)
    return alpha * beta * (one(x) - t * t)


sigmoid = Activation(_sigmoid, _sigmoid_grad, doc="1 / (1 + exp(-x))",
                     description="1 / (1 + exp(-x)): logistic sigmoid (ONNX Sigmoid)")
tanh = Activation(_tanh, _tanh_grad, doc="tanh(x)", description="tanh(x): hyperbolic tangent (ONNX Tanh)")
hard_sigmoid = Activation(
    _hard_sigmoid, _hard_sigmoid_grad, alpha=0.2, beta=0.5, doc="min(max(alpha*x + beta, 0), 1)",
    description="min(max(alpha*x + beta, 0), 1): piecewise-linear sigmoid (ONNX HardSigmoid, Keras's alpha and beta)",
)
relu = Activation(_relu, _relu_grad, doc="max(0, x)", description="max(0, x): rectifier (ONNX Relu)")
leaky_relu = Activation(_leaky_relu, _leaky_relu_grad, alpha=0.01, doc="x if x >= 0 else alpha*x",
                        description="x if x >= 0 else alpha*x: leaky rectifier (ONNX LeakyRelu)")
elu = Activation(_elu, _elu_grad, alpha=1.0, doc="x if x >= 0 else alpha*(exp(x) - 1)",
                 description="x if x >= 0 else alpha*(exp(x) - 1): exponential linear unit (ONNX Elu, Clevert et al.)")
softsign = Activation(_softsign, _softsign_grad, doc="x / (1 + |x|)",
                      description="x / (1 + |x|): softsign (ONNX Softsign)")
softplus = Activation(_softplus, _softplus_grad, doc="log(1 + exp(x))",
                      description="log(1 + exp(x)): softplus (ONNX Softplus)")
scaled_tanh = Activation(_scaled_tanh, _scaled_tanh_grad, alpha=1.0, beta=1.0, doc="alpha*tanh(beta*x)",
                         description="alpha*tanh(beta*x): scaled tanh (ONNX RNN ScaledTanh)")
