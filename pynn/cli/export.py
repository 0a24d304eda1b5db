"""``pynn export MODEL.npz --out MODEL.onnx``: a saved pynn model as an ONNX file
(``pynn.onnx.export``), with the metadata ``pynn evaluate``/``predict`` read (the training
columns, the class labels, the task), so the .onnx file scores as the .npz does."""
import os
import sys

from ._common import CLIError, _positive_int


def add_parser(sub):
    """The ``pynn export`` subcommand, on the subparsers ``sub``."""
    from ..onnx._common import DEFAULT_OPSET, MIN_OPSET

    helptext = "write a saved model as an ONNX file (needs pip install 'pynn[onnx]')"
    p = sub.add_parser("export", help=helptext, description=helptext)
    p.add_argument("model", metavar="MODEL", help="a model saved by pynn train / pynn.save")
    p.add_argument("--out", metavar="FILE.onnx",
                   help="the ONNX file to write (default: MODEL with the suffix .onnx)")
    p.add_argument("--opset", type=_positive_int, default=None,
                   help=f"the ONNX opset, {MIN_OPSET} or later (default {DEFAULT_OPSET}: what "
                        f"ONNX Runtime 1.17 and later run)")


def run(args, out=None):
    """Run ``pynn export``; returns the exit status."""
    out = out or sys.stdout
    from ..io import load
    from ..onnx import export

    if not os.path.exists(args.model):
        raise CLIError(f"{args.model}: no such file")
    target = args.out or os.path.splitext(args.model)[0] + ".onnx"
    if os.path.abspath(target) == os.path.abspath(args.model):
        raise CLIError(f"--out {target}: would overwrite the model it exports")
    model, meta = load(args.model, return_metadata=True)
    model.eval()
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    proto = export(model, target, opset=args.opset, metadata=meta)
    print(f"wrote {target} (ONNX opset {proto.opset_import[0].version}, "
          f"{model.dtype.name if hasattr(model, 'dtype') else 'float32'})", file=out)
    return 0
