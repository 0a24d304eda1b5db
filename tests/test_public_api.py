"""The public API stays where users import it from: every name that a module's ``__all__``
listed before the package was reorganized by idea (pynn/train/, pynn/io/, Standardizer and
gradcheck into pynn.nn) still imports from that module, and is the same object as at its new
home."""
import importlib

import pytest

# Each public module's __all__ as of 0.1.0 before the reorganization (main at 199d2bc).
PUBLIC = {
    "pynn": ["GradcheckError", "ModelFileError", "Trainer", "data", "datasets", "get_backend",
             "get_num_threads", "gradcheck", "load", "load_checkpoint", "manual_seed", "nn",
             "optim", "save", "save_checkpoint", "set_backend", "set_num_threads",
             "show_config", "theory"],
    "pynn.backend": ["ACTIVATIONS", "Backend", "NumpyBackend", "backend_for", "get_backend",
                     "set_backend"],
    "pynn.callbacks": ["CSVLogger", "Callback", "EarlyStopping", "LRSchedulerCallback",
                       "ModelCheckpoint", "TerminateOnNaN", "restore", "snapshot"],
    "pynn.data": ["GaussianNoise", "LabelEncoder", "RandomShift", "Standardizer", "as_array",
                  "batch_bounds", "minibatches", "one_hot", "split_indices", "train_val_split"],
    "pynn.datasets": ["load", "load_digits", "load_mnist_5k"],
    "pynn.io": ["ModelFileError", "architecture", "build", "load", "load_checkpoint",
                "register", "save", "save_checkpoint"],
    "pynn.nn": ["Activation", "BCEWithLogitsLoss", "BatchNorm", "CrossEntropyLoss", "Dense",
                "Dropout", "ELU", "Identity", "IncompatibleKeys", "LeakyReLU", "Loss", "MSELoss",
                "Module", "ModuleList", "Parameter", "ParameterArena", "ReLU", "Sequential",
                "Sigmoid", "Softmax", "Square", "Step", "Tanh", "inference", "init", "pack",
                "plan", "utils"],
    "pynn.nn.utils": ["clip_grad_norm_", "clip_grad_value_"],
    "pynn.optim": ["Adagrad", "Adam", "AdamW", "CosineAnnealingLR", "ExponentialLR",
                   "LRScheduler", "LinearLR", "MultiStepLR", "OneCycleLR", "Optimizer",
                   "RMSprop", "ReduceLROnPlateau", "SGD", "SequentialLR", "StepLR"],
    "pynn.optim.lr_sequences": ["OneCycleLR", "SequentialLR"],
    "pynn.search": ["Choice", "DEFAULTS", "DEFAULT_GRID", "DEFAULT_SPACE", "KNOBS", "LogUniform",
                    "SearchResult", "Uniform", "grid_search", "random_search"],
    "pynn.theory": ["boolean_network", "polytope_network", "product_network",
                    "truth_table_inputs", "union_network"],
    "pynn.train": ["CSVLogger", "Callback", "EarlyStopping", "History", "LRSchedulerCallback",
                   "ModelCheckpoint", "TerminateOnNaN", "Trainer", "restore", "snapshot"],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_every_public_name_still_imports_from_its_module(module):
    mod = importlib.import_module(module)
    missing = [name for name in PUBLIC[module] if not hasattr(mod, name)]
    assert not missing, f"{module} lost {missing}"
    namespace = {}
    exec(f"from {module} import {', '.join(PUBLIC[module])}", namespace)  # the user's spelling


def test_the_sklearn_names_still_import():
    pytest.importorskip("sklearn")
    from pynn.sklearn import MLPClassifier, MLPRegressor  # noqa: F401


def test_moved_names_are_the_same_objects_at_both_homes():
    import pynn
    from pynn import callbacks, data, io, nn, train
    from pynn.train import callbacks as train_callbacks

    assert data.Standardizer is nn.Standardizer
    assert pynn.gradcheck is nn.gradcheck and pynn.GradcheckError is nn.GradcheckError
    assert all(getattr(callbacks, n) is getattr(train_callbacks, n) for n in callbacks.__all__)
    assert pynn.Trainer is train.Trainer
    assert pynn.ModelFileError is io.ModelFileError and io.ModelFileError.__module__ == "pynn.io"
