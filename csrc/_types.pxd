# Fused and index types, declared once for every kernel module.

ctypedef fused floating:
    float
    double

# Signed 64-bit index: memoryview shapes are Py_ssize_t; loops over products of shapes must not
# overflow a C int on large batches.
ctypedef Py_ssize_t idx_t
