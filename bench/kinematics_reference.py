#!/usr/bin/env python3
"""A pPXF-like reference fit (numpy/scipy) for bench/kinematics.sh (issue #16).

pPXF itself cannot be installed here (no PyPI); this is a straightforward implementation of the
same fit, structured as pPXF 6-8 does it (Cappellari & Emsellem 2004; Cappellari 2017):
  - the galaxy spectrum is log-rebinned (flux-conserving, like ppxf_util.log_rebin) onto
    ln(lambda) pixels of twice the templates' velocity step (velscale_ratio = 2), aligned with
    pairs of template pixels; the templates start bluer, by
    vsyst = c (mean(ln lam_temp[:2]) - ln lam_gal[0]) (pPXF's convention);
  - at every evaluation all templates are convolved with the Gauss-Hermite LOSVD through its
    analytic Fourier transform (numpy rfft/irfft over the whole template length), averaged in
    pairs onto the galaxy pixels;
  - linear parameters by NNLS with free additive Legendre polynomials (pPXF's nnls_flags:
    scipy.optimize.nnls on [A, -A_poly]);
  - V, sigma by scipy.optimize.least_squares (trust-region reflective with bounds and
    finite-difference Jacobian, ftol 1e-4, as pPXF's capfit), formal errors from the Jacobian
    scaled by sqrt(chi2/dof).
It reads the spectra, prepared templates and cubeflow's results that kinematics_bench wrote
(--out DIR), fits the first N spectra on one thread, and prints the time per spectrum, the
ratio to cubeflow's, and how the two fits agree.

usage: kinematics_reference.py DIR [N]
"""
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np
from numpy.polynomial import legendre
from scipy import optimize

C = 299792.458


def log_rebin_edges(edges_in, flux, var, edges_out):
    """Flux-conserving rebinning of piecewise-constant data (edges increasing)."""
    cum = np.concatenate([[0.0], np.cumsum(flux * np.diff(edges_in))])
    cumv = np.concatenate([[0.0], np.cumsum(var * np.diff(edges_in) ** 2)])
    f = np.interp(edges_out, edges_in, cum)
    out = np.diff(f) / np.diff(edges_out)
    # variance: independent input pixels, weights w_ij = overlap / out width (approximation:
    # linear interpolation of the cumulative weighted variance)
    fv = np.interp(edges_out, edges_in, cumv)
    outv = np.diff(fv) / np.diff(edges_out) ** 2
    return out, outv


def losvd_rfft(v, sig, nl, factor):
    """Analytic FT of a Gaussian LOSVD (pPXF's _losvd_rfft for moments = 2), pixels of the galaxy."""
    w = np.linspace(0, np.pi * factor * sig, nl)
    return np.conj(np.exp(1j * (v / sig) * w - 0.5 * w ** 2))


class PpxfLike:
    def __init__(self, templates, velscale, galaxy, noise, goodpixels, degree, vsyst, factor=2):
        self.galaxy, self.noise, self.good = galaxy, noise, goodpixels
        self.npix = galaxy.size
        self.factor = factor
        self.velscale = velscale
        self.vsyst = vsyst  # galaxy pixels
        ntpl = templates.shape[0] - templates.shape[0] % factor
        self.star = templates[:ntpl]
        self.npad = int(2 ** int(np.ceil(np.log2(ntpl))))
        self.rfft = np.fft.rfft(self.star, self.npad, axis=0)
        x = np.linspace(-1, 1, self.npix)
        self.poly = legendre.legvander(x, degree)
        self.npoly = degree + 1
        self.nfev = 0

    def model_matrix(self, pars):
        v, s = pars[0] / self.velscale + self.vsyst, pars[1] / self.velscale
        lr = losvd_rfft(v, s, self.rfft.shape[0], self.factor)
        conv = np.fft.irfft(self.rfft * lr[:, None], self.npad, axis=0)[: self.star.shape[0]]
        conv = conv.reshape(-1, self.factor, conv.shape[1]).mean(1)  # pairs -> galaxy pixels
        return np.hstack([self.poly, conv[: self.npix]])

    def residuals(self, pars):
        self.nfev += 1
        c = self.model_matrix(pars)
        a = c[self.good] / self.noise[self.good, None]
        b = self.galaxy[self.good] / self.noise[self.good]
        aa = np.hstack([a, -a[:, : self.npoly]])  # free polynomials (pPXF's nnls_flags)
        x = optimize.nnls(aa, b, maxiter=5000)[0]
        x[: self.npoly] -= x[a.shape[1]:]
        self.weights = x[: a.shape[1]]
        return b - a @ self.weights

    def fit(self, start):
        bounds = ([start[0] - 2000, 0.01 * self.velscale], [start[0] + 2000, 1000])
        r = optimize.least_squares(self.residuals, start, bounds=bounds, method="trf", x_scale="jac",
                                   ftol=1e-4, diff_step=[1e-3, 1e-3])
        res = r.fun
        chi2 = res @ res / (res.size - 2)
        jtj = r.jac.T @ r.jac
        err = np.sqrt(np.diag(np.linalg.inv(jtj))) * np.sqrt(chi2)
        return r.x, err, chi2


def main():
    d = sys.argv[1]
    nmax = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    tmpl = np.load(os.path.join(d, "templates.npy"))
    ln0, vs_t, _ = np.load(os.path.join(d, "template_grid.npy"))
    flux = np.load(os.path.join(d, "flux.npy"))
    var = np.load(os.path.join(d, "variance.npy"))
    edges = np.load(os.path.join(d, "edges_rest.npy"))
    truth = np.load(os.path.join(d, "truth.npy"))
    cf = np.load(os.path.join(d, "cubeflow.npy"))
    masks = np.load(os.path.join(d, "masks.npy")).reshape(-1, 2)
    wmin, wmax, degree, moments, sigma_start, cf_ms = np.load(os.path.join(d, "settings.npy"))
    if moments != 2:
        print("kinematics_reference.py: only moments = 2 is implemented (got %d)" % moments)
        return 2
    # Galaxy log grid: pixels of 2 template pixels, edges on template edges, inside the window.
    dln_t = vs_t / C
    t_edges = np.exp(ln0 + (np.arange(tmpl.shape[0] + 1) - 0.5) * dln_t)
    first = int(np.ceil((np.log(max(wmin, edges[0])) - (ln0 - 0.5 * dln_t)) / dln_t))
    first += first % 2  # even: galaxy pixel k = template pixels first + 2k, first + 2k + 1
    g_edges = t_edges[first::2]
    g_edges = g_edges[g_edges <= min(wmax, edges[-1])]
    npix = g_edges.size - 1
    centres = np.sqrt(g_edges[:-1] * g_edges[1:])
    good = np.ones(npix, bool)
    for lo, hi in masks:
        good &= ~((centres >= lo) & (centres <= hi))
    goodpix = np.flatnonzero(good)
    templates = tmpl
    vsyst = -first / 2.0  # galaxy pixels: template pixels first, first + 1 make galaxy pixel 0
    n = min(nmax, flux.shape[0])
    print("== pPXF-like reference (numpy %s, scipy FFT + NNLS + least_squares), one thread" % np.__version__)
    print("galaxy log grid: %d pixels of %.2f km/s (velscale_ratio 2), %d good; %d templates of %d pixels"
          % (npix, 2 * vs_t, goodpix.size, templates.shape[1], templates.shape[0]))
    rows = []
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    nfev = 0
    for k in range(n):
        g, gv = log_rebin_edges(edges, flux[k], var[k], g_edges)
        norm = np.median(g[good])
        p = PpxfLike(templates, 2 * vs_t, g / norm, np.sqrt(gv) / norm, goodpix, int(degree), vsyst)
        sol, err, chi2 = p.fit(np.array([0.0, sigma_start]))
        nfev += p.nfev
        rows.append((sol[0], sol[1], err[0], err[1]))
    cpu = (time.process_time() - cpu0) / n
    wall = (time.perf_counter() - wall0) / n
    rows = np.array(rows)
    dv = rows[:, 0] - cf[:n, 0]
    ds = rows[:, 1] - cf[:n, 1]
    cf_ms_n = np.nanmean(cf[:n, 4])
    print("reference: %.0f ms CPU per spectrum (%.0f ms wall), %.1f function evaluations per fit" % (1e3 * cpu, 1e3 * wall, nfev / n))
    print("cubeflow (same %d spectra): %.2f ms CPU per spectrum" % (n, cf_ms_n))
    print("speed-up: %.0f x (CPU time); issue #16 target: >= 100 x against pPXF's 0.6 s, i.e. cubeflow <= 6 ms"
          % (1e3 * cpu / cf_ms_n))
    print("agreement reference - cubeflow: median |dV| %.2f km/s (%.2f errors), median |dsigma| %.2f km/s (%.2f errors)"
          % (np.median(np.abs(dv)), np.median(np.abs(dv) / cf[:n, 2]), np.median(np.abs(ds)), np.median(np.abs(ds) / cf[:n, 3])))
    pv_r = (rows[:, 0] - truth[:n, 0]) / rows[:, 2]
    ps_r = (rows[:, 1] - truth[:n, 1]) / rows[:, 3]
    pv_c = (cf[:n, 0] - truth[:n, 0]) / cf[:n, 2]
    ps_c = (cf[:n, 1] - truth[:n, 1]) / cf[:n, 3]
    print("pulls (fit - truth) / error, mean and sd: reference V %+.2f %.2f sigma %+.2f %.2f | cubeflow V %+.2f %.2f sigma %+.2f %.2f"
          % (pv_r.mean(), pv_r.std(), ps_r.mean(), ps_r.std(), pv_c.mean(), pv_c.std(), ps_c.mean(), ps_c.std()))
    print("(the reference fits log-rebinned data, whose rebinning correlates neighbouring pixels; cubeflow fits the"
          " data's own pixels)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
