// Gauss-Hermite LOSVD: normalised Hermite polynomials, the analytic Fourier transform, and the
// kernel tables (continuous path for sigma >= 1 pixel, band-limited path below).
#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <numbers>

#include "cubeflow/kinematics/losvd.hpp"

using namespace cubeflow::kinematics;

namespace {
LosvdParams Params(double v, double sigma, double h3 = 0, double h4 = 0) {
  LosvdParams p;
  p.v = v;
  p.sigma = sigma;
  p.moments = 4;
  p.h[0] = h3;
  p.h[1] = h4;
  return p;
}
}  // namespace

TEST(Losvd, HermitePolynomialsAreThoseOfVanDerMarelAndFranx) {
  double h[7];
  for (double y : {-2.3, -0.4, 0.0, 1.1, 3.0}) {
    HermiteNormalised(y, 6, h);
    EXPECT_NEAR(h[3], (2 * std::sqrt(2.0) * y * y * y - 3 * std::sqrt(2.0) * y) / std::sqrt(6.0), 1e-12);
    EXPECT_NEAR(h[4], (4 * std::pow(y, 4) - 12 * y * y + 3) / std::sqrt(24.0), 1e-12);
  }
}

TEST(Losvd, FourierTransformMatchesNumericalIntegration) {
  for (const auto& p : {Params(0.7, 1.3, 0.1, -0.05), Params(-3.2, 4.0, -0.08, 0.12)}) {
    for (double w : {0.0, 0.3, 1.1, 2.5}) {
      std::complex<double> num = 0;
      const double dx = 0.002;
      for (double x = p.v - 12 * p.sigma; x <= p.v + 12 * p.sigma; x += dx)
        num += LosvdValue(p, x) * std::polar(1.0, -w * x) * dx;
      const auto ana = LosvdFourier(p, w);
      EXPECT_NEAR(ana.real(), num.real(), 1e-6) << "w " << w;
      EXPECT_NEAR(ana.imag(), num.imag(), 1e-6) << "w " << w;
    }
  }
}

TEST(Losvd, ContinuousTableIsTheGaussHermiteFunctionAndItsIntegral) {
  KernelTable t;
  const auto p = Params(12.3, 2.7, 0.07, -0.05);
  t.Build(p, true);
  EXPECT_EQ(t.shift(), 12);
  double cum = 0;
  const double dx = 1e-3;
  for (double x = -t.half_support(); x < t.half_support(); x += dx) {
    cum += LosvdValue(p, x + t.shift() + 0.5 * dx) * dx;
    if (std::fmod(x + t.half_support(), 1.37) < dx) {
      EXPECT_NEAR(t.Density(x + dx), LosvdValue(p, x + dx + t.shift()), 2e-3 * 0.15);
      EXPECT_NEAR(t.Cumulative(x + dx), cum, 1e-5);
    }
  }
  EXPECT_NEAR(t.Cumulative(t.half_support() + 5.0), t.plateau(), 1e-12);
  EXPECT_NEAR(t.plateau(), 1 - 0.05 * 3 / std::sqrt(24.0), 1e-12);  // 1 + h4 E[H4]
}

TEST(Losvd, DerivativeTablesMatchFiniteDifferences) {
  for (double sigma : {0.6, 2.7}) {  // band-limited and continuous paths
    auto p = Params(5.4, sigma, 0.06, 0.04);
    KernelTable t, tp, tm;
    t.Build(p, true);
    for (int param = 0; param < 3; ++param) {
      const double eps = 1e-4;
      auto pp = p, pm = p;
      double* q = param == 0 ? &pp.sigma : &pp.h[param - 1];
      double* r = param == 0 ? &pm.sigma : &pm.h[param - 1];
      *q += eps;
      *r -= eps;
      tp.Build(pp, false);
      tm.Build(pm, false);
      for (double x = -6; x <= 6; x += 0.77) {
        const double fd = (tp.Cumulative(x) - tm.Cumulative(x)) / (2 * eps);
        // Derivative tables are interpolated linearly (they only steer the minimiser and the errors).
        const double tol = (sigma < 1 ? 5e-3 : 2e-3) + 2e-2 * std::abs(fd);
        EXPECT_NEAR(t.CumulativeDerivative(param, x), fd, tol) << "sigma " << sigma << " param " << param << " x " << x;
      }
    }
  }
}

TEST(Losvd, KernelConvolvesBandLimitedSignalsExactly) {
  // The fitter uses pixel means of the convolved template: for a template cos(w t) sampled at
  // integer pixels, mean over [x, x + a] of sum_t cos(w t) k(. - t)
  //   = sum_t cos(w t) [K(x + a - t) - K(x - t)] / a = Re[L^(w) e^{iwx} (e^{iwa} - 1) / (iwa)]
  // for frequencies inside the templates' band (w <= 0.6 pi), to 1e-4 of the amplitude (the
  // cubic interpolation of K on quarter pixels and the kernel's cut tails).
  for (double sigma : {0.05, 0.4, 0.95, 1.5, 4.0}) {
    const auto p = Params(3.35, sigma, 0.05, -0.03);
    KernelTable t;
    t.Build(p, false);
    const double sh = static_cast<double>(t.shift());
    for (double w : {0.2, 0.9, 1.6}) {
      for (double x : {0.0, 0.37, 0.81}) {
        for (double a : {1.0, 2.13}) {
          double s = 0;
          for (int tt = -200; tt <= 200; ++tt)
            s += std::cos(w * tt) * (t.Cumulative(x + a - sh - tt) - t.Cumulative(x - sh - tt)) / a;
          const std::complex<double> box = (std::polar(1.0, w * a) - 1.0) / std::complex<double>(0, w * a);
          const double want = (LosvdFourier(p, w) * std::polar(1.0, w * x) * box).real();
          EXPECT_NEAR(s, want, 1e-4) << "sigma " << sigma << " w " << w << " x " << x << " a " << a;
        }
      }
    }
  }
}
