"""The expression forms of the smooth activations and row norms, written once for both
directions: ``pynn.onnx.export`` emits a form's steps with its constants (``emit``), and
``pynn.onnx.load`` recognizes the same steps in a file and reads the constants back
(``match``), so what is written is exactly what is read.

A form is a list of steps ``(key, op_type, inputs, attrs)``; an input is ``"x"`` (the layer's
input), the key of an earlier step, ``"=name"`` (a one-value constant of the model's dtype),
``"@name"`` (a row of constants: a norm's weight) or ``"#axes"`` (ReduceMean's int64 axes,
an input from opset 18). The last step's output is the layer's. Add and Mul read their two
inputs in either order (other tools write ``x * s`` and ``s * x`` alike).

Why expressions at all: ONNX Runtime (1.17 to 1.32 at least) has no float64 kernel for Erf,
Gelu (its body is Erf) or Softplus, and ONNX stores an operator's float attributes (epsilon)
as float32, which a float64 norm's 1e-5 is not; the float64 forms below keep every constant
in a float64 initializer and use only operators that run in double.
"""
import numpy as np

# GELU's exact form in float64 without Erf: erfc(t) = exp(-t^2) * erfcx(t), erfcx (the
# scaled complementary error function, smooth, from 1 down to 0) as a Chebyshev series,
# evaluated by Clenshaw's recurrence: on [0, 6.5] in t, and beyond in s = 1 / t, as
# erfcx(t) = s * g(s) with g smooth on [0, 1 / 6.5] (g(0) = 1 / sqrt(pi)). The coefficients
# are numpy.polynomial.Chebyshev.interpolate(f, degree, domain).coef for f = scipy.special.
# erfcx on [0, 6.5] (degree 32) and f = g on [0, 1 / 6.5] (degree 12): the degrees of the
# least error (higher ones fit the reference's own rounding). erfc comes out within 1e-14
# (absolute) of scipy's below 6.5 and 4e-15 (relative) beyond, so GELU within 1e-14 |x|, and
# its negative tail (as small as 1e-300) within 1e-13 of its own size.
ERFCX_CHEBYSHEV = (
    0.31115282024401436, -0.34497689612499816, 0.17970358671287315,
    -0.08883889923701477, 0.04197621742434641, -0.019057457389640448,
    0.008348064968915289, -0.0035400311170253078, 0.0014571727250819067,
    -0.0005835606521884215, 0.00022780914207566218, -8.683372716476682e-05,
    3.2364286488411665e-05, -1.1810160173190926e-05, 4.224221041103525e-06,
    -1.4824327662394251e-06, 5.108966059529714e-07, -1.7305137430940286e-07,
    5.765315404276677e-08, -1.8904751367215642e-08, 6.105035158120294e-09,
    -1.942775542957656e-09, 6.09541504941228e-10, -1.886436406364236e-10,
    5.7614982210171855e-11, -1.7372704466718476e-11, 5.173710849500103e-12,
    -1.5223366614443296e-12, 4.427693263666661e-13, -1.2722771601230453e-13,
    3.601302968862571e-14, -9.921094389737329e-15, 2.27209466104448e-15,
)
ERFCX_TAIL_CHEBYSHEV = (
    0.5617476454250544, -0.0032397462704276143, -0.0007858787870670324,
    1.344740633051889e-05, 1.456496587481718e-06, -6.542930870231144e-08,
    -3.525549200629123e-09, 3.6256244525038315e-10, 5.714381260166005e-12,
    -2.1395355767668686e-12, 4.57086097949726e-14, 1.2188054686905365e-14,
    -4.492050163407925e-16,
)
ERFCX_SPAN = 6.5
GELU_TANH_K = float(np.sqrt(2.0 / np.pi))
GELU_TANH_KAPPA = 0.044715
COMMUTATIVE = ("Add", "Mul")


def _step(key, op_type, *inputs, **attrs):
    return (key, op_type, list(inputs), attrs)


def softplus_core(z, dtype):
    """softplus(z) = log(1 + exp(z)): ONNX's Softplus in float32 (no float64 kernel in ONNX
    Runtime); in float64 max(z, 0) + log(1 + exp(-|z|)), which never overflows and is within
    1.2e-16 (absolute) of log1p's value. Ends in step "sp"."""
    if dtype == np.float32:
        return [_step("sp", "Softplus", z)]
    return [_step("sp_abs", "Abs", z), _step("sp_neg", "Neg", "sp_abs"),
            _step("sp_exp", "Exp", "sp_neg"), _step("sp_1p", "Add", "sp_exp", "=one"),
            _step("sp_log", "Log", "sp_1p"), _step("sp_relu", "Relu", z),
            _step("sp", "Add", "sp_relu", "sp_log")]


def silu():
    return [_step("s", "Sigmoid", "x"), _step("y", "Mul", "x", "s")]


def softplus(dtype):
    """pynn's (torch's) Softplus: x where beta x > threshold, else softplus(beta x) / beta."""
    return ([_step("z", "Mul", "x", "=beta"), _step("g", "Greater", "z", "=threshold")]
            + softplus_core("z", dtype)
            + [_step("d", "Div", "sp", "=beta"), _step("y", "Where", "g", "x", "d")])


def mish(dtype):
    return softplus_core("x", dtype) + [_step("t", "Tanh", "sp"), _step("y", "Mul", "x", "t")]


def gelu_erf():
    """x * (1 + erf(x / sqrt 2)) * 0.5: the form torch.onnx writes below opset 20."""
    return [_step("d", "Div", "x", "=sqrt2"), _step("e", "Erf", "d"),
            _step("p", "Add", "e", "=one"), _step("m", "Mul", "x", "p"),
            _step("y", "Mul", "m", "=half")]


def gelu_tanh():
    """x * (1 + tanh(k (x + kappa x^3))) * 0.5, k = sqrt(2 / pi), kappa = 0.044715."""
    return [_step("x2", "Mul", "x", "x"), _step("x3", "Mul", "x2", "x"),
            _step("c", "Mul", "x3", "=kappa"), _step("s", "Add", "x", "c"),
            _step("u", "Mul", "s", "=k"), _step("th", "Tanh", "u"),
            _step("p", "Add", "th", "=one"), _step("m", "Mul", "x", "p"),
            _step("y", "Mul", "m", "=half")]


def _clenshaw(name, u, n):
    """Steps of the Chebyshev series sum c_k T_k(u), k = 0..n, coefficients "={name}{k}":
    b_k = c_k + 2u b_{k+1} - b_{k+2}, the sum c_0 + u b_1 - b_2; ends in step "{name}"."""
    c = f"={name}"
    steps = [_step(f"{name}u2", "Add", u, u), _step(f"{name}m{n - 1}", "Mul", f"{name}u2",
                                                    f"{c}{n}"),
             _step(f"{name}b{n - 1}", "Add", f"{name}m{n - 1}", f"{c}{n - 1}")]
    prev2, prev = f"{c}{n}", f"{name}b{n - 1}"
    for k in range(n - 2, 0, -1):
        steps += [_step(f"{name}m{k}", "Mul", f"{name}u2", prev),
                  _step(f"{name}s{k}", "Sub", f"{name}m{k}", prev2),
                  _step(f"{name}b{k}", "Add", f"{name}s{k}", f"{c}{k}")]
        prev2, prev = prev, f"{name}b{k}"
    return steps + [_step(f"{name}m0", "Mul", u, prev), _step(f"{name}s0", "Sub",
                                                              f"{name}m0", prev2),
                    _step(name, "Add", f"{name}s0", f"{c}0")]


def gelu_erfcx():
    """x * Phi(x) with Phi from the Chebyshev series of erfcx (float64, no Erf kernel):
    t = |x| / sqrt 2, e = erfc(t) / 2, Phi = e where x < 0 else 1 - e."""
    near = [_step("a", "Abs", "x"), _step("t", "Mul", "a", "=rsqrt2"),
            _step("tc", "Min", "t", "=span"), _step("us", "Mul", "tc", "=scale"),
            _step("u", "Sub", "us", "=one")]
    far = [_step("tf", "Max", "t", "=span"), _step("s", "Div", "=one", "tf"),
           _step("vs", "Mul", "s", "=tail_scale"), _step("v", "Sub", "vs", "=one")]
    pick = [_step("gs", "Mul", "g", "s"), _step("beyond", "Greater", "t", "=span"),
            _step("f", "Where", "beyond", "gs", "c")]
    return (near + _clenshaw("c", "u", len(ERFCX_CHEBYSHEV) - 1) + far
            + _clenshaw("g", "v", len(ERFCX_TAIL_CHEBYSHEV) - 1) + pick
            + [_step("t2", "Mul", "t", "t"), _step("nt2", "Neg", "t2"),
               _step("ex", "Exp", "nt2"), _step("erfc", "Mul", "ex", "f"),
               _step("e", "Mul", "erfc", "=half"), _step("q", "Sub", "=one", "e"),
               _step("neg", "Less", "x", "=zero"), _step("phi", "Where", "neg", "e", "q"),
               _step("y", "Mul", "x", "phi")])


def gelu_erfcx_constants():
    consts = {f"c{k}": c for k, c in enumerate(ERFCX_CHEBYSHEV)}
    consts.update({f"g{k}": c for k, c in enumerate(ERFCX_TAIL_CHEBYSHEV)})
    consts.update(rsqrt2=float(np.sqrt(0.5)), span=ERFCX_SPAN, scale=2.0 / ERFCX_SPAN,
                  tail_scale=2.0 * ERFCX_SPAN, one=1.0, half=0.5, zero=0.0)
    return consts


def _reduce_mean(key, data, opset):
    # ReduceMean's axes: an attribute before opset 18, an int64 input from it
    if opset >= 18:
        return _step(key, "ReduceMean", data, "#axes", keepdims=1)
    return _step(key, "ReduceMean", data, axes=[-1], keepdims=1)


def layernorm(opset, weight, bias):
    """(x - mean) / sqrt(var + eps) (* weight) (+ bias), mean and biased var over the row."""
    steps = [_reduce_mean("mean", "x", opset), _step("d", "Sub", "x", "mean"),
             _step("d2", "Mul", "d", "d"), _reduce_mean("var", "d2", opset),
             _step("ve", "Add", "var", "=eps"), _step("sd", "Sqrt", "ve"),
             _step("n", "Div", "d", "sd")]
    if weight:
        steps.append(_step("w", "Mul", "n", "@weight"))
    if bias:
        steps.append(_step("b", "Add", steps[-1][0], "@bias"))
    return steps


def rmsnorm(opset, weight):
    """x / sqrt(mean(x^2) + eps) (* weight)."""
    steps = [_step("x2", "Mul", "x", "x"), _reduce_mean("ms", "x2", opset),
             _step("me", "Add", "ms", "=eps"), _step("rms", "Sqrt", "me"),
             _step("n", "Div", "x", "rms")]
    if weight:
        steps.append(_step("w", "Mul", "n", "@weight"))
    return steps


# ---------------------------------------------------------------------------- export
def emit(b, label, steps, consts):
    """Add the form's nodes to export's builder ``b`` after its current tensor, constants
    from ``consts`` ({name: value}); the form's output becomes ``b.x``."""
    tensors, made = {"x": b.x}, {}
    for key, op_type, inputs, attrs in steps:
        names = []
        for name in inputs:
            if name[0] in "=@#":
                if name not in made:
                    made[name] = (b.const_int64(f"{label}.axes", [-1]) if name == "#axes" else
                                  b.const(f"{label}.{name[1:]}", consts[name[1:]]))
                names.append(made[name])
            else:
                names.append(tensors[name])
        tensors[key] = b.node(op_type, names, label, **attrs)
    b.x = tensors[steps[-1][0]]
