"""Topic 2. Every Boolean function is a two-layer network of step units.

``pynn.theory.boolean_network(table, form="dnf")`` writes the function as an OR of minterms:
one hidden Step unit per input where the function is 1, each firing on exactly that input,
and an output unit that fires when any of them does. ``form="cnf"`` writes it as an AND of
clauses: one hidden unit per input where the function is 0. Both are exact for every function,
and the width is the price: a random function of n inputs needs about 2**n / 2 hidden units,
parity exactly 2**(n - 1) in either form, while AND needs 1 in DNF and 2**n - 1 in CNF.
"""
import argparse
import pathlib

import numpy as np

from pynn.theory import boolean_network, truth_table_inputs


def run(out_dir, quick=False):
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    sizes = range(1, 7 if quick else 11)
    functions_per_size = 3 if quick else 10

    checked = mismatches = 0
    width = {"random dnf": [], "random cnf": [], "parity": [], "AND (dnf)": [], "AND (cnf)": []}
    for n in sizes:
        X = truth_table_inputs(n)
        widths = {"dnf": [], "cnf": []}
        for _ in range(functions_per_size):
            table = rng.integers(0, 2, 2**n)
            for form in ("dnf", "cnf"):
                model = boolean_network(table, form=form)
                mismatches += int(np.count_nonzero(model.forward(X)[:, 0] != table))
                checked += 1
                widths[form].append(model.layers[0].out_features)
        width["random dnf"].append(np.mean(widths["dnf"]))
        width["random cnf"].append(np.mean(widths["cnf"]))
        parity = X.sum(axis=1).astype(int) % 2
        width["parity"].append(boolean_network(parity).layers[0].out_features)
        conjunction = X.min(axis=1).astype(int)
        width["AND (dnf)"].append(boolean_network(conjunction, "dnf").layers[0].out_features)
        width["AND (cnf)"].append(boolean_network(conjunction, "cnf").layers[0].out_features)

    # one function drawn as a picture: its truth table and both networks' outputs
    n_show = 6 if quick else 8
    table = rng.integers(0, 2, 2**n_show)
    X = truth_table_inputs(n_show)
    outputs = {form: boolean_network(table, form=form).forward(X)[:, 0] for form in ("dnf", "cnf")}

    print(f"{checked} random functions of 1..{max(sizes)} inputs, in DNF and CNF: "
          f"{mismatches} wrong outputs")
    print("hidden units, n = " + " ".join(f"{n:>5d}" for n in sizes))
    for name, values in width.items():
        print(f"  {name:12s}" + "".join(f"{v:6.0f}" for v in values))
    print("=> two layers compute any Boolean function exactly; the width can be 2**(n - 1).")

    _plot(out_dir / "02_boolean.png", list(sizes), width, table, outputs, n_show)
    return {"checked": checked, "mismatches": mismatches, "sizes": list(sizes),
            "width": width, "shown_mismatches": {f: int(np.count_nonzero(o != table))
                                                 for f, o in outputs.items()}}


def _plot(path, sizes, width, table, outputs, n_show):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 4.2), layout="constrained")
    ax = fig.add_subplot(1, 4, 1)
    for (name, values), marker in zip(width.items(), "osD^v"):
        ax.plot(sizes, values, marker=marker, label=name)
    ax.plot(sizes, [2.0**n for n in sizes], "k:", label="2**n inputs")
    ax.set_yscale("log", base=2)
    ax.set_xlabel("number of inputs n")
    ax.set_title("hidden units the two-layer network needs")
    ax.legend(fontsize=8)
    side = 2 ** (n_show // 2)
    for k, (image, title) in enumerate([
        (table, f"truth table of a random\nfunction of {n_show} inputs"),
        (outputs["dnf"], f"network output, DNF\n({np.count_nonzero(outputs['dnf'] != table)} "
                         "differences)"),
        (outputs["cnf"], f"network output, CNF\n({np.count_nonzero(outputs['cnf'] != table)} "
                         "differences)"),
    ]):
        ax = fig.add_subplot(1, 4, 2 + k)
        ax.imshow(np.asarray(image).reshape(side, -1), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(title)
        ax.set_xlabel(f"inputs {n_show // 2 + 1}..{n_show} (binary)")
        ax.set_ylabel(f"inputs 1..{n_show // 2} (binary)")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=pathlib.Path(__file__).resolve().parent / "images")
    parser.add_argument("--quick", action="store_true", help="small sizes (for the tests)")
    args = parser.parse_args()
    run(args.out, quick=args.quick)
