// Issue #16 check: cubeflow's LOSVD fitter on the 28 bin spectra of the nGIST tutorial run
// (real MUSE data, shared/data/reference/ngist_tutorial_NGC0000) against nGIST's own pPXF
// kinematics, with nGIST's settings: the 636 MILES/BaSTI templates nGIST used
// (ssp/miles_basti_kb_ngist), its LSF files (lsf_MUSE-WFM for the data, 2.51 A for MILES),
// 4800-5500 A, moments 4, additive degree 8, no multiplicative polynomial, start
// V = 0 / sigma = 200 km/s, pPXF's default penalty, no clipping, and the good pixels of its
// fit (GOODPIX: specMask_KIN). nGIST's spectra are log-rebinned at 70 km/s; the templates are
// sampled at 35 km/s (nGIST's velscale_ratio 2).
//
// Bounds (issue #16, not to be loosened): V and sigma within nGIST's 1-sigma formal errors
// (FORM_ERR_V, FORM_ERR_SIGMA: pPXF errors times sqrt(chi2)) for >= 90 % of the bins; median
// |dV| <= 5 km/s; median |dsigma / sigma| <= 5 %.
//
// nGIST's velocities carry a known zero-point offset, removed before the comparison: with
// templates sampled velscale_ratio = 2 times finer than the galaxy, pPXF averages pairs of
// template pixels, whose centre lies half a fine pixel redwards of the first one, so the
// systemic offset must be vsyst = c (mean(ln lam_temp[:2]) - ln lam_gal[0]) (pPXF's own
// example since its v3.1.2, "use proper input vsyst when velscale_ratio > 1", found in the
// MaNGA DAP); nGIST passes c (ln lam_temp[0] - ln lam_gal[0]) (stellarKinematics/ppxf.py:
// `offset`), which makes its V too high by c * d ln(lambda)_template / 2 = 70 / 2 / 2 =
// 17.5 km/s for every bin. This test derives that number from nGIST's VELSCALE and its
// velscale_ratio, subtracts it from nGIST's V, and also asserts that the uncorrected
// difference is that offset (so the correction is the reason, not a fudge).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "cubeflow/kinematics/fitter.hpp"
#include "cubeflow/kinematics/masks.hpp"
#include "cubeflow/kinematics/templates.hpp"
#include "cubeflow/sim/ssp.hpp"
#include "ngist_reference.hpp"

using namespace cubeflow;
using namespace cubeflow::kinematics;

namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct Comparison {
  int within_v = 0, within_sigma = 0, within_both = 0, n = 0;
  double med_dv = 0, med_dsig_rel = 0, ms_per_bin = 0;
  double med_dv_raw = 0;  ///< median of (ours - nGIST) without the zero-point correction
};

/// nGIST's velocity zero-point offset (see the file comment): half a template pixel.
double NgistVelocityOffset(const kintest::NgistRun& g) {
  const int velscale_ratio = 2;  // stellarKinematics/ppxf.py
  return 0.5 * g.velscale / velscale_ratio;
}

/// Fits the 28 nGIST bins with templates `miles` and `data_lsf` for the data and returns the comparison.
Comparison RunNgist(const kintest::NgistRun& g, const sim::SspGrid& miles, const spectral::Lsf& data_lsf,
                    bool print, bool template_fwhm_from_library = false) {
  TemplateOptions to;
  to.wave_min = 4799;  // the window must hold all 583 of nGIST's pixels (4800.2-5500.2 A edges)
  to.wave_max = 5501;
  to.z_sys = g.z;
  to.data_lsf = data_lsf;
  if (!template_fwhm_from_library) to.template_lsf = spectral::Lsf::Constant(2.51);  // configFiles/lsf_MILES
  to.velscale = g.velscale / 2;                     // nGIST's velscale_ratio = 2
  auto ts = PrepareTemplates(miles, to);
  EXPECT_TRUE(ts.ok()) << ts.status().message();
  if (!ts.ok()) return {};
  FitOptions fo;
  fo.wave_min = to.wave_min;
  fo.wave_max = to.wave_max;
  fo.z_sys = g.z;
  fo.moments = 4;
  fo.degree = 8;
  fo.mdegree = 0;
  fo.v_start = 0;
  fo.sigma_start = 200;
  fo.clip_sigma = 0;
  fo.scale_errors = true;
  auto fitter = LosvdFitter::Make(*ts, fo);
  EXPECT_TRUE(fitter.ok()) << fitter.status().message();
  if (!fitter.ok()) return {};
  const double dln = g.velscale / 299792.458;
  std::vector<double> edges(static_cast<size_t>(g.npix + 1));
  for (int i = 0; i <= g.npix; ++i)
    edges[static_cast<size_t>(i)] = std::exp((i < g.npix ? g.loglam[static_cast<size_t>(i)] : g.loglam.back() + dln) - 0.5 * dln);
  std::vector<uint8_t> good(static_cast<size_t>(g.npix), 0);
  for (int i : g.goodpix) good[static_cast<size_t>(i)] = 1;

  Comparison c;
  std::vector<double> dv, dsr, dvraw;
  const double voff = NgistVelocityOffset(g);
  double cpu = 0;
  if (print)
    std::printf("V_ngist = nGIST's V - %.2f km/s (zero-point correction, see the file comment)\n", voff);
    std::printf("bin  V_ngist  V_ours  dV/err | SIG_ngist SIG_ours dS/err | h3_n h3_o | h4_n h4_o | errV n/o  errS n/o  chi2\n");
  for (int b = 0; b < g.nbins; ++b) {
    std::vector<double> flux(static_cast<size_t>(g.npix)), var(static_cast<size_t>(g.npix));
    for (int i = 0; i < g.npix; ++i) {
      flux[static_cast<size_t>(i)] = g.spec[static_cast<size_t>(b * g.npix + i)];
      const double e = g.espec[static_cast<size_t>(b * g.npix + i)];
      var[static_cast<size_t>(i)] = e * e;
    }
    SpectrumView sv;
    sv.edges = edges;
    sv.flux = flux;
    sv.variance = var;
    sv.good = good;
    sv.id = b;
    const auto t0 = std::chrono::steady_clock::now();
    auto r = fitter->Fit(sv);
    cpu += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_TRUE(r.ok()) << r.status().message();
    if (!r.ok()) continue;
    const double V = r->params[0], S = r->params[1];
    const double vref = g.V[static_cast<size_t>(b)] - voff;
    const double dV = V - vref, dS = S - g.SIGMA[static_cast<size_t>(b)];
    dvraw.push_back(V - g.V[static_cast<size_t>(b)]);
    const bool okv = std::abs(dV) <= g.EV[static_cast<size_t>(b)];
    const bool oks = std::abs(dS) <= g.ESIGMA[static_cast<size_t>(b)];
    c.within_v += okv;
    c.within_sigma += oks;
    c.within_both += okv && oks;
    ++c.n;
    dv.push_back(std::abs(dV));
    dsr.push_back(std::abs(dS) / g.SIGMA[static_cast<size_t>(b)]);
    if (print)
      std::printf("%3d %8.2f %7.2f %6.2f | %8.2f %8.2f %6.2f | %5.3f %5.3f | %5.3f %5.3f | %4.2f/%4.2f %4.2f/%4.2f %5.2f\n", b,
                  vref, V, dV / g.EV[static_cast<size_t>(b)], g.SIGMA[static_cast<size_t>(b)], S,
                  dS / g.ESIGMA[static_cast<size_t>(b)], g.H3[static_cast<size_t>(b)], r->params[2], g.H4[static_cast<size_t>(b)],
                  r->params[3], g.EV[static_cast<size_t>(b)], r->errors[0], g.ESIGMA[static_cast<size_t>(b)], r->errors[1], r->chi2);
  }
  c.med_dv = Median(dv);
  c.med_dv_raw = Median(dvraw);
  c.med_dsig_rel = Median(dsr);
  c.ms_per_bin = 1e3 * cpu / std::max(c.n, 1);
  return c;
}

class NgistComparison : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    run_ = new kintest::NgistRun(kintest::LoadNgist());
    if (!run_->error.empty()) return;
    const std::string dir = cftest::DataDir() + "/ssp/miles_basti_kb_ngist";
    auto r = sim::LoadSspDirectory(dir);
    if (r.ok()) miles_ = new std::shared_ptr<sim::SspGrid>(*r);
    else run_->error = r.status().message();
  }
  static void TearDownTestSuite() {
    delete run_;
    delete miles_;
  }
  void SetUp() override {
    if (!run_->error.empty()) GTEST_SKIP() << "nGIST reference or MILES templates not available: " << run_->error
                                           << " (set CUBEFLOW_TEST_DATA_DIR; CI has shared/data)";
  }
  static kintest::NgistRun* run_;
  static std::shared_ptr<sim::SspGrid>* miles_;
};
kintest::NgistRun* NgistComparison::run_ = nullptr;
std::shared_ptr<sim::SspGrid>* NgistComparison::miles_ = nullptr;

}  // namespace

TEST_F(NgistComparison, AgreesWithPpxfWithinItsErrors) {
  auto lsf = spectral::Lsf::FromFile(run_->dir + "/configFiles/lsf_MUSE-WFM");
  ASSERT_TRUE(lsf.ok()) << lsf.status().message();
  const Comparison c = RunNgist(*run_, **miles_, *lsf, true);
  ASSERT_EQ(c.n, 28);
  std::printf("within nGIST's 1-sigma errors: V %d/28, sigma %d/28, both %d/28; median |dV| %.2f km/s; "
              "median |dsigma/sigma| %.2f %%; %.1f ms per bin (636 templates); uncorrected median "
              "V - V_nGIST = %+.2f km/s (nGIST zero point: %+.2f)\n",
              c.within_v, c.within_sigma, c.within_both, c.med_dv, 100 * c.med_dsig_rel, c.ms_per_bin, c.med_dv_raw,
              -NgistVelocityOffset(*run_));
  // The uncorrected offset is nGIST's zero point, to within a km/s.
  EXPECT_NEAR(c.med_dv_raw, -NgistVelocityOffset(*run_), 1.0);
  EXPECT_GE(c.within_both, 26) << ">= 90 % of the 28 bins (26) must agree within nGIST's errors in V and sigma";
  EXPECT_LE(c.med_dv, 5.0);
  EXPECT_LE(c.med_dsig_rel, 0.05);
}

/// The bounds must catch a fitter whose templates are not matched to the data's LSF: here the data
/// are said to have the templates' own 2.51 A resolution (no broadening of the templates).
TEST_F(NgistComparison, UncorrectedLsfFailsTheBounds) {
  const Comparison c = RunNgist(*run_, **miles_, spectral::Lsf::Constant(2.51 * (1 + run_->z)), false);
  std::printf("uncorrected LSF: within errors %d/28, median |dV| %.2f km/s, median |dsigma/sigma| %.1f %%\n",
              c.within_both, c.med_dv, 100 * c.med_dsig_rel);
  EXPECT_FALSE(c.within_both >= 26 && c.med_dv <= 5.0 && c.med_dsig_rel <= 0.05);
  EXPECT_GT(c.med_dsig_rel, 0.05);
}

/// ... and one with the wrong templates (the synthetic built-in SSPs instead of MILES).
TEST_F(NgistComparison, WrongTemplatesFailTheBounds) {
  auto lsf = spectral::Lsf::FromFile(run_->dir + "/configFiles/lsf_MUSE-WFM");
  ASSERT_TRUE(lsf.ok());
  const Comparison c = RunNgist(*run_, *sim::BuiltinSsp(), *lsf, false, true);
  std::printf("built-in templates: within errors %d/28, median |dV| %.2f km/s, median |dsigma/sigma| %.1f %%\n",
              c.within_both, c.med_dv, 100 * c.med_dsig_rel);
  EXPECT_FALSE(c.within_both >= 26 && c.med_dv <= 5.0 && c.med_dsig_rel <= 0.05);
}
