"""What numpy's SIMD dispatch runs on this CPU: the loss kernels pick their faster form from it. No Caffe import."""
import importlib


def numpy_cpu_features() -> tuple[list[str], list[str]]:
    """(CPU features numpy detected and enabled, numpy's dispatch targets), or two empty lists.

    ``NPY_DISABLE_CPU_FEATURES`` (set before numpy is imported) removes features from the first list.
    """
    # Private modules, imported by name: numpy's stubs do not declare these two attributes.
    for name in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):      # numpy 2, then 1.x
        try:
            module = importlib.import_module(name)
            features, dispatch = module.__cpu_features__, module.__cpu_dispatch__
        except (ImportError, AttributeError):
            continue
        return [k for k, v in features.items() if v], list(dispatch)
    return [], []


def log1p_is_simd() -> bool:
    """Whether numpy runs float32 ``log1p`` as SIMD code: only its AVX-512 (SKX) build does (SVML).

    With AVX2 alone it is a scalar loop, about 13 times slower than ``log``.
    """
    return "AVX512_SKX" in numpy_cpu_features()[0]
