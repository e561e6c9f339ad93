"""Comparing FITS products HDU by HDU (needs numpy and astropy; import after the caller's
cfskip checks for them)."""
import numpy as np
from astropy.io import fits


def hdu_data(path):
    """{EXTNAME: data array or table, None for a header-only HDU} of every HDU of a file."""
    with fits.open(path) as h:
        return {x.name: (None if x.data is None else np.array(x.data)) for x in h}


def assert_same(a, b):
    """Asserts two hdu_data() results hold the same HDUs with identical data (NaN equal to NaN),
    table columns compared one by one; the message names the HDU (and column)."""
    assert a.keys() == b.keys(), (a.keys(), b.keys())
    for k in a:
        x, y = a[k], b[k]
        if x is None or y is None:
            assert x is None and y is None, k
        elif x.dtype.names:  # a table
            for c in x.dtype.names:
                u, v = np.asarray(x[c]), np.asarray(y[c])
                assert u.shape == v.shape and np.array_equal(u, v, equal_nan=u.dtype.kind == "f"), (k, c)
        else:
            assert x.shape == y.shape and np.array_equal(x, y, equal_nan=True), k
