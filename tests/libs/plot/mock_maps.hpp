#pragma once
// A mock MAPS product written with the real writer (cubeflow::fits::WriteMapsFile): a disc
// galaxy with Voronoi bins, age / metallicity gradients and a young two-armed spiral, the
// 16-bin mass-fraction and [Z/H] histories, uncertainties (as _ERR or as _P16/_P84), a failed
// bin, a masked hole, and the BINS table with vector columns.
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "cubeflow/data.hpp"
#include "cubeflow/fits/cube_io.hpp"
#include "cubeflow/fits/maps.hpp"
#include "fits_test_util.hpp"

namespace plottest {

struct MockOptions {
  int64_t nx = 60, ny = 50;
  int nbins = 140;
  double rot_deg = 0;          // WCS rotation
  bool errors = true;          // uncertainty extensions / columns
  bool percentiles = false;    // errors as _P16/_P84 (SBI-like) instead of _ERR
  std::set<std::string> omit;  // extension / column names left out (e.g. "MW_LOGAGE")
  bool table = true;           // write the BINS table
};

struct MockTruth {
  std::vector<int32_t> binid;  // per spaxel
  std::vector<double> lw_age, mw_age, lw_zh, mw_zh, snr;  // per bin
  std::vector<std::vector<double>> mass_frac, zh;         // per bin, 16 each
  std::vector<double> cx, cy;                             // centroids
  int64_t failed_bin = -1, best_bin = -1, lowsnr_bin = -1;  // lowsnr: flagged LOWSNR, values kept
};

inline const std::vector<double>& AgeCentres() {
  static const std::vector<double> a = {0.007, 0.021, 0.0425, 0.076, 0.1145, 0.1615, 0.23,  0.345,
                                        0.545, 0.865, 1.37,   2.17,   3.44,  5.455,  8.645, 14.2};
  return a;
}

/// TAN, 0.2"/pix, rotated by `rot_deg`, centred on NGC 3627.
inline cubeflow::CelestialWcs MockWcs(int64_t nx, int64_t ny, double rot_deg) {
  return cftest::TanWcs(nx, ny, rot_deg, 170.0625, 12.9916, nx / 2.0, ny / 2.0);
}

/// Writes the mock product; returns the truth it was built from.
inline MockTruth WriteMockMaps(const std::string& path, const MockOptions& o = {}) {
  using namespace cubeflow;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const int64_t nx = o.nx, ny = o.ny, ns = nx * ny;
  const double x0 = nx * 0.49, y0 = ny * 0.48, q = 0.8, rmax = std::min(nx, ny) * 0.47;
  auto rell = [&](double x, double y) { return std::hypot(x - x0, (y - y0) / q); };
  // Voronoi seeds, denser near the centre.
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> ux(0, static_cast<double>(nx)), uy(0, static_cast<double>(ny)),
      u01(0, 1);
  std::vector<double> sx, sy;
  while (static_cast<int>(sx.size()) < o.nbins) {
    const double x = ux(rng), y = uy(rng), r = rell(x, y);
    if (r > rmax) continue;
    if (u01(rng) > 1.0 / (1.0 + r / 6.0)) continue;
    sx.push_back(x);
    sy.push_back(y);
  }
  MockTruth t;
  t.binid.assign(static_cast<size_t>(ns), -1);
  std::vector<int> count(sx.size(), 0);
  for (int64_t y = 0; y < ny; ++y)
    for (int64_t x = 0; x < nx; ++x) {
      if (rell(x, y) > rmax) continue;
      if (std::hypot(x - nx * 0.78, y - ny * 0.75) < 2.5) continue;  // a masked foreground star
      int best = 0;
      double bd = 1e300;
      for (size_t k = 0; k < sx.size(); ++k) {
        const double d = std::hypot(x - sx[k], y - sy[k]);
        if (d < bd) {
          bd = d;
          best = static_cast<int>(k);
        }
      }
      t.binid[static_cast<size_t>(y * nx + x)] = best;
      ++count[static_cast<size_t>(best)];
    }
  // Renumber bins that got spaxels 0..n-1, and compute centroids.
  std::vector<int> remap(sx.size(), -1);
  int nb = 0;
  for (size_t k = 0; k < sx.size(); ++k)
    if (count[k] > 0) remap[k] = nb++;
  for (auto& b : t.binid)
    if (b >= 0) b = remap[static_cast<size_t>(b)];
  t.cx.assign(nb, 0);
  t.cy.assign(nb, 0);
  std::vector<int64_t> nspax(nb, 0);
  for (int64_t s = 0; s < ns; ++s) {
    const int b = t.binid[static_cast<size_t>(s)];
    if (b < 0) continue;
    t.cx[b] += s % nx;
    t.cy[b] += s / nx;
    ++nspax[b];
  }
  const auto& ages = AgeCentres();
  const int na = static_cast<int>(ages.size());
  double best_snr = -1;
  for (int b = 0; b < nb; ++b) {
    t.cx[b] /= nspax[b];
    t.cy[b] /= nspax[b];
    const double r = rell(t.cx[b], t.cy[b]), phi = std::atan2((t.cy[b] - y0) / q, t.cx[b] - x0);
    const double arm = std::pow(std::max(0.0, std::cos(2 * phi - 0.22 * r)), 4) * std::min(1.0, r / 6.0);
    const double snr = 25 + 60 * std::exp(-r / 8.0) + 0.5 * (b % 7);
    t.snr.push_back(snr);
    if (snr > best_snr) {
      best_snr = snr;
      t.best_bin = b;
    }
    // SFH: old exponentially declining component plus a recent burst along the arms.
    std::vector<double> m(na);
    double tot = 0;
    const double tau = 2.0 + 0.15 * r;
    for (int k = 0; k < na; ++k) {
      const double w = (k == 0 ? ages[1] - ages[0] : (ages[std::min(k + 1, na - 1)] - ages[k - 1]) / 2);
      m[k] = w * std::exp((ages[k] - 14.2) / tau) + (ages[k] < 0.3 ? 0.004 * arm / 0.3 : 0.0);
      tot += m[k];
    }
    std::vector<double> zh(na);
    double lwa = 0, mwa = 0, lwz = 0, mwz = 0, lt = 0;
    const double z_now = 0.15 - 0.02 * r + 0.05 * arm;
    for (int k = 0; k < na; ++k) {
      m[k] /= tot;
      zh[k] = z_now - 1.1 * std::pow(ages[k] / 14.2, 0.7);
      const double l = m[k] / std::pow(ages[k], 0.8);  // younger populations are brighter per mass
      lt += l;
      mwa += m[k] * std::log10(ages[k] * 1e9);
      lwa += l * std::log10(ages[k] * 1e9);
      mwz += m[k] * zh[k];
      lwz += l * zh[k];
    }
    t.mass_frac.push_back(m);
    t.zh.push_back(zh);
    t.mw_age.push_back(mwa);
    t.lw_age.push_back(lwa / lt);
    t.mw_zh.push_back(mwz);
    t.lw_zh.push_back(lwz / lt);
  }
  // One failed bin (the last one): NaN results, FAILED quality; the lowest-S/N other bin is
  // flagged LOWSNR but keeps its values.
  t.failed_bin = nb - 1;
  for (int b = 0; b + 1 < nb; ++b)
    if (t.lowsnr_bin < 0 || t.snr[b] < t.snr[static_cast<size_t>(t.lowsnr_bin)]) t.lowsnr_bin = b;

  auto make = [&](const std::string& name, const std::string& kind, int64_t np = 1) {
    return cftest::FilledMap(name, kind, MockWcs(nx, ny, o.rot_deg), nx, ny, np, nan);
  };
  fits::MapsProduct p;
  p.run.pipeline_file = "tests/plot/mock.yaml";
  p.primary["OBJECT"] = "MOCK-DISC";
  // Spaxel S/N map (as spectral.snr_map writes it).
  auto snr_map = make("SNR", "value");
  for (int64_t s = 0; s < ns; ++s) {
    const double r = rell(s % nx, s / nx);
    snr_map->data[static_cast<size_t>(s)] = 40 * std::exp(-r / 7.0) + 1.5 + 0.3 * std::sin(s * 0.7);
  }
  p.maps.push_back(snr_map);
  auto binid = make("BINID", "index");
  auto qual = make("QUALITY", "mask");
  for (int64_t s = 0; s < ns; ++s) {
    const int b = t.binid[static_cast<size_t>(s)];
    binid->data[static_cast<size_t>(s)] = b;
    qual->data[static_cast<size_t>(s)] = b < 0                ? kQualNoCoverage
                                         : b == t.failed_bin   ? kQualInferenceFailed
                                         : b == t.lowsnr_bin   ? kQualLowSnr
                                                               : 0;
  }
  p.maps.push_back(binid);
  p.maps.push_back(qual);
  struct Field {
    std::string name, unit;
    std::vector<std::vector<double>> v;  // per bin
    bool vec;
  };
  std::vector<Field> fields;
  auto scalar = [&](const std::vector<double>& v) {
    std::vector<std::vector<double>> out;
    for (double x : v) out.push_back({x});
    return out;
  };
  fields.push_back({"LW_LOGAGE", "dex", scalar(t.lw_age), false});
  fields.push_back({"MW_LOGAGE", "dex", scalar(t.mw_age), false});
  fields.push_back({"LW_ZH", "dex", scalar(t.lw_zh), false});
  fields.push_back({"MW_ZH", "dex", scalar(t.mw_zh), false});
  fields.push_back({"MASS_FRAC", "", t.mass_frac, true});
  fields.push_back({"ZH", "dex", t.zh, true});
  std::vector<std::string> labels;
  for (double a : ages) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%gGyr", a);
    labels.push_back(buf);
  }
  fits::BinaryTable tab;
  tab.name = "BINS";
  tab.nrows = nb;
  {
    std::vector<int64_t> ids, nsp, qq;
    std::vector<double> snr;
    for (int b = 0; b < nb; ++b) {
      ids.push_back(b);
      nsp.push_back(nspax[b]);
      qq.push_back(b == t.failed_bin ? kQualInferenceFailed : b == t.lowsnr_bin ? kQualLowSnr : 0);
      snr.push_back(t.snr[b]);
    }
    tab.columns.push_back(fits::TableColumn::Int64("BINID", ids));
    tab.columns.push_back(fits::TableColumn::Double("X", t.cx, "pix"));
    tab.columns.push_back(fits::TableColumn::Double("Y", t.cy, "pix"));
    tab.columns.push_back(fits::TableColumn::Int64("NSPAX", nsp));
    tab.columns.push_back(fits::TableColumn::Double("SNR", snr));
    tab.columns.push_back(fits::TableColumn::Int64("QUALITY", qq));
  }
  auto add = [&](const std::string& name, const std::string& kind, const std::string& of, const std::string& unit,
                 const std::vector<std::vector<double>>& per_bin, bool vec) {
    const int64_t np = vec ? static_cast<int64_t>(per_bin[0].size()) : 1;
    if (!o.omit.count(name)) {
      auto m = make(name, kind, np);
      m->bunit = unit;
      m->companion_of = of;
      if (vec) m->plane_names = labels;
      if (kind == "value") m->header["QUALDATA"] = "QUALITY";
      for (int64_t s = 0; s < ns; ++s) {
        const int b = t.binid[static_cast<size_t>(s)];
        if (b < 0 || b == t.failed_bin) continue;
        for (int64_t k = 0; k < np; ++k) m->data[static_cast<size_t>(k * ns + s)] = per_bin[b][k];
      }
      p.maps.push_back(m);
    }
    if (o.table && !o.omit.count(name)) {
      std::vector<double> col;
      for (int b = 0; b < nb; ++b)
        for (int64_t k = 0; k < np; ++k) col.push_back(b == t.failed_bin ? nan : per_bin[b][k]);
      if (vec) tab.columns.push_back(fits::TableColumn::DoubleVector(name, np, col, unit));
      else tab.columns.push_back(fits::TableColumn::Double(name, col, unit));
    }
  };
  for (const auto& f : fields) {
    add(f.name, "value", "", f.unit, f.v, f.vec);
    if (!o.errors) continue;
    std::vector<std::vector<double>> e = f.v, lo = f.v, hi = f.v;
    for (int b = 0; b < nb; ++b)
      for (size_t k = 0; k < e[b].size(); ++k) {
        const double sig = f.name == "MASS_FRAC" ? 0.2 * f.v[b][k] + 0.004 : 0.03 + 1.5 / t.snr[b];
        e[b][k] = sig;
        lo[b][k] = f.v[b][k] - 0.8 * sig;
        hi[b][k] = f.v[b][k] + 1.2 * sig;
        if (f.name == "MASS_FRAC") lo[b][k] = std::max(0.0, lo[b][k]);
      }
    if (o.percentiles) {
      add(f.name + "_P16", "value", "", f.unit, lo, f.vec);
      add(f.name + "_P84", "value", "", f.unit, hi, f.vec);
    } else {
      add(f.name + "_ERR", "error", f.name, f.unit, e, f.vec);
    }
  }
  if (o.table) p.tables.push_back(tab);
  const Status st = fits::WriteMapsFile(path, p);
  if (!st.ok()) throw Error(st.message());
  return t;
}

}  // namespace plottest
