"""The ``onnxruntime`` contender of ``pynn bench`` (optional): the predict and latency cases'
network as an ONNX graph (Gemm, BatchNormalization, Relu; built here with ``onnx.helper`` from
the case's weights, the same as every contender's) run by ONNX Runtime's CPU session. The
latency cases give it one thread (``intra_op_num_threads=1``: the usual setting of a service
answering requests, and the figure issue 20 holds pynn to); predict 60,000 rows gets the case's
threads. onnx and onnxruntime are imported inside, so a missing one is a skip."""
import numpy as np

# Loaded by path by pynn/bench/_worker.py, after it loaded _cases.py as _pynn_bench_cases
# (this file is not imported as part of the pynn package: see _worker.py).
from _pynn_bench_cases import inference_weights, run_case

BN_EPS = 1e-5  # pynn's and torch's BatchNorm default
OPSET = 17


def onnx_graph(weights, dtype):
    """The eval-mode network of ``weights`` (``inference_weights``) as a serialized ONNX
    model: X (batch, in) -> Gemm (X W^T + b) [-> BatchNormalization] -> Relu ..., logits."""
    from onnx import TensorProto, helper, numpy_helper

    elem = {np.dtype(np.float32): TensorProto.FLOAT,
            np.dtype(np.float64): TensorProto.DOUBLE}[np.dtype(dtype)]
    nodes, inits, h = [], [], "X"
    for i, w in enumerate(weights):
        inits += [numpy_helper.from_array(w["W"], f"W{i}"),
                  numpy_helper.from_array(w["b"], f"b{i}")]
        nodes.append(helper.make_node("Gemm", [h, f"W{i}", f"b{i}"], [f"z{i}"], transB=1))
        h = f"z{i}"
        if i == len(weights) - 1:
            break
        if "gamma" in w:
            names = [f"{k}{i}" for k in ("gamma", "beta", "mean", "var")]
            for name, key in zip(names, ("gamma", "beta", "running_mean", "running_var")):
                inits.append(numpy_helper.from_array(w[key], name))
            nodes.append(helper.make_node("BatchNormalization", [h, *names], [f"n{i}"],
                                          epsilon=BN_EPS))
            h = f"n{i}"
        nodes.append(helper.make_node("Relu", [h], [f"a{i}"]))
        h = f"a{i}"
    n_in, n_out = weights[0]["W"].shape[1], weights[-1]["W"].shape[0]
    graph = helper.make_graph(
        nodes, "pynn_bench", [helper.make_tensor_value_info("X", elem, [None, n_in])],
        [helper.make_tensor_value_info(h, elem, [None, n_out])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    return model.SerializeToString()


def ort_session(model_bytes, threads):
    """An ONNX Runtime CPU session on ``threads`` intra-op threads, ops run in sequence."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def time_onnxruntime(spec, X, y, dtype, threads, info):
    import onnx
    import onnxruntime as ort

    threads = 1 if spec["kind"] == "latency" else threads
    info.update(onnxruntime_version=ort.__version__, onnx_version=onnx.__version__,
                ort_threads=threads, ort_opset=OPSET)
    session = ort_session(onnx_graph(inference_weights(spec, dtype), dtype), threads)
    batch = spec["batch"]

    def predict(Xp):
        if Xp.shape[0] <= batch:
            return session.run(None, {"X": Xp})[0]
        return np.concatenate([session.run(None, {"X": Xp[i:i + batch]})[0]
                               for i in range(0, Xp.shape[0], batch)])

    return run_case(spec, X, y, None, predict, None, None)
