// Tests of filter curves and synthetic photometry.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "cubeflow/sim/filters.hpp"
#include "ssp_test_util.hpp"
#include "test_data.hpp"

namespace cubeflow::sim {
namespace {

using testing::DataDir;
using testing::HasDir;
using testing::PlanckFraction;

// STScI WFC3/UVIS pivot wavelengths (Angstrom).
const std::map<std::string, double> kStsciPivot = {
    {"F275W", 2704.0}, {"F336W", 3355.0}, {"F438W", 4325.0}, {"F555W", 5308.0}, {"F814W", 8024.0}};

std::vector<std::pair<std::string, std::vector<double>>> SmoothSpectra(const std::vector<double>& w) {
  std::vector<std::pair<std::string, std::vector<double>>> out;
  for (double alpha : {-3.0, -1.0, 0.0, 1.0, 2.0}) {
    std::vector<double> f(w.size());
    for (size_t i = 0; i < w.size(); ++i) f[i] = std::pow(w[i] / 5000.0, alpha);
    out.emplace_back("power law " + std::to_string(alpha), f);
  }
  for (double t : {3500.0, 5772.0, 10000.0, 30000.0}) {
    std::vector<double> f(w.size());
    for (size_t i = 0; i < w.size(); ++i) f[i] = PlanckFraction(w[i], t);
    out.emplace_back("blackbody " + std::to_string(t), f);
  }
  return out;
}

TEST(Filters, BuiltinPivotsMatchStsci) {
  for (const auto& [name, pivot] : kStsciPivot) {
    auto f = BuiltinFilter(name);
    ASSERT_TRUE(f.ok()) << f.status().message();
    EXPECT_NEAR(PivotWavelength(*f) / pivot, 1.0, 0.01) << name;
    EXPECT_EQ(f->name, name);
    double peak = 0;
    for (double t : f->throughput) peak = std::max(peak, t);
    EXPECT_GT(peak, 0.05) << name;
    EXPECT_LT(peak, 0.5) << name;
  }
  // Prefixed and lower-case spellings.
  ASSERT_TRUE(BuiltinFilter("wfc3_uvis_f555w").ok());
  ASSERT_TRUE(BuiltinFilter("V").ok());
  EXPECT_NEAR(PivotWavelength(*BuiltinFilter("V")), 5500.0, 60.0);
  EXPECT_NEAR(PivotWavelength(*BuiltinFilter("B")), 4400.0, 60.0);
}

TEST(Filters, UnknownBuiltinListsKnownNames) {
  auto f = BuiltinFilter("F999W");
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("F555W"), std::string::npos);
}

TEST(Filters, RealCurvesPivotsAndBuiltinPhotometryAgree) {
  const std::string dir = DataDir() + "/filters/hst";
  if (!HasDir(dir)) CUBEFLOW_SKIP_WITHOUT_DATA() << "no HST filter curves in " << dir << " (set CUBEFLOW_DATA_DIR)";
  std::vector<double> w;
  for (double l = 1500.0; l <= 11000.0; l += 0.5) w.push_back(l);
  const auto spectra = SmoothSpectra(w);
  for (const auto& [name, pivot] : kStsciPivot) {
    std::string lower = name;
    for (auto& c : lower) c = static_cast<char>(std::tolower(c));
    for (const std::string path : {dir + "/hostphot/WFC3_UVIS2_" + name + ".dat",
                                   dir + "/sncosmo/hst_wfc3_uvis_" + lower + ".dat"}) {
      auto real = LoadFilter(path);
      ASSERT_TRUE(real.ok()) << real.status().message();
      EXPECT_NEAR(PivotWavelength(*real) / pivot, 1.0, 0.005) << path;
      const Filter builtin = *BuiltinFilter(name);
      for (const auto& [label, f] : spectra) {
        const double a = MeanFluxDensity(builtin, w, f), b = MeanFluxDensity(*real, w, f);
        ASSERT_TRUE(std::isfinite(a) && std::isfinite(b)) << label;
        EXPECT_NEAR(a / b, 1.0, 0.03) << name << " " << label << " vs " << path;
      }
    }
  }
}

TEST(Filters, MeanFluxDensityBasics) {
  const Filter v = *BuiltinFilter("F555W");
  std::vector<double> w, f;
  for (double l = 3000.0; l <= 9000.0; l += 1.3) {
    w.push_back(l);
    f.push_back(7.0);
  }
  EXPECT_NEAR(MeanFluxDensity(v, w, f), 7.0, 1e-12);
  // A spectrum that ends inside the band is not enough.
  std::vector<double> w2(w.begin(), w.begin() + 1800), f2(f.begin(), f.begin() + 1800);
  ASSERT_LT(w2.back(), 5500.0);
  EXPECT_TRUE(std::isnan(MeanFluxDensity(v, w2, f2)));
  // f_lambda ~ lambda^-2 (flat f_nu): <f_lambda> = f(lambda_pivot) exactly.
  std::vector<double> g(w.size());
  for (size_t i = 0; i < w.size(); ++i) g[i] = std::pow(w[i], -2.0);
  const double p = PivotWavelength(v);
  EXPECT_NEAR(MeanFluxDensity(v, w, g) * p * p, 1.0, 2e-4);
}

TEST(Filters, BandpassOperatorMatchesMeanFluxDensity) {
  std::vector<double> w;
  for (double l = 2000.0; l <= 10000.0; l += 1.0) w.push_back(l);
  std::vector<Filter> filters;
  for (const auto& n : {"F275W", "F336W", "F438W", "F555W", "F814W"}) filters.push_back(*BuiltinFilter(n));
  auto made = BandpassOperator::Make(filters, w);
  ASSERT_TRUE(made.ok()) << made.status().message();
  const BandpassOperator& op = *made;
  ASSERT_EQ(op.n_bands(), 5u);
  std::vector<double> f(w.size());
  for (size_t i = 0; i < w.size(); ++i) f[i] = PlanckFraction(w[i], 8000.0) * (1 + 0.1 * std::sin(w[i]));
  std::vector<double> out(5);
  op.Apply(f, out);
  for (size_t b = 0; b < 5; ++b) {
    EXPECT_NEAR(out[b] / MeanFluxDensity(filters[b], w, f), 1.0, 1e-12);
    EXPECT_NEAR(op.pivots()[b], PivotWavelength(filters[b]), 1e-9);
  }
  std::vector<double> short_w(w.begin() + 2000, w.end());
  // A grid that misses F275W: refused, naming the filter and what to do.
  auto uncovered = BandpassOperator::Make(filters, short_w);
  ASSERT_FALSE(uncovered.ok());
  EXPECT_NE(uncovered.status().message().find("filter 'F275W' is not covered by the spectral grid (4000-10000 A"),
            std::string::npos)
      << uncovered.status().message();
  EXPECT_NE(uncovered.status().message().find("extend the model wavelength range or drop the band"),
            std::string::npos);
}

TEST(Filters, LoadFilterParsesAndReportsErrors) {
  const std::string path = ::testing::TempDir() + "/cubeflow_test_filter.dat";
  {
    std::ofstream o(path);
    o << "# a comment\n\n5000 0.0\n5100, 0.5\n5050\t0.4\n5200 0.0\n";
  }
  auto f = LoadFilter(path, "MYBAND");
  ASSERT_TRUE(f.ok()) << f.status().message();
  EXPECT_EQ(f->name, "MYBAND");
  ASSERT_EQ(f->wave.size(), 4u);
  EXPECT_EQ(f->wave[1], 5050.0);  // sorted
  EXPECT_EQ(LoadFilter(path)->name, "cubeflow_test_filter");
  {
    std::ofstream o(path);
    o << "5000 0.1\nnot numbers\n";
  }
  auto bad = LoadFilter(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(path), std::string::npos);
  EXPECT_NE(bad.status().message().find("line 2"), std::string::npos);
  std::remove(path.c_str());
  auto missing = LoadFilter("/nonexistent/curve.dat");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/nonexistent/curve.dat"), std::string::npos);
}

}  // namespace
}  // namespace cubeflow::sim
