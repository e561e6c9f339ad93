// `cubeflow compare MAPS.fits TRUTH.fits`: recovered age / metallicity maps of a mock galaxy
// against its truth (issue #7 accuracy figures), per bin.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "commands.hpp"
#include "cubeflow/atomic_file.hpp"
#include "cubeflow/data.hpp"
#include "cubeflow/fits/image_io.hpp"

namespace {

using cubeflow::Map;

struct Quantity {
  const char* name;      // extension in both files
  const char* weight;    // truth extension giving the spaxel weight inside a bin
  double max_offset;     // target |median offset|, dex
  double max_scatter;    // target scatter, dex
};

// Targets of issue #7: |median offset| <= 0.05 dex; scatter <= 0.15 (LW age), 0.2 (MW age),
// 0.08 ([Z/H]) dex.
const Quantity kQuantities[] = {
    {"LW_LOGAGE", "light", 0.05, 0.15},
    {"MW_LOGAGE", "MASS", 0.05, 0.20},
    {"LW_ZH", "light", 0.05, 0.08},
    {"MW_ZH", "MASS", 0.05, 0.08},
};

double Quantile(std::vector<double> v, double p) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const double pos = p * (v.size() - 1);
  const size_t lo = static_cast<size_t>(pos), hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - lo) * (v[hi] - v[lo]);
}

std::string Fmt(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.4f", v);
  return b;
}

}  // namespace

namespace cubeflow::tools {

int CompareCommand(int argc, char** argv) {
  using namespace cubeflow;
  CLI::App app{"Compare the age and metallicity maps of a run on a mock galaxy with the galaxy's truth, per bin",
               "cubeflow compare"};
  std::string maps_path, truth_path, json_path, light_band = "F555W";
  uint32_t skip_bits = kQualNoCoverage | kQualInferenceFailed;
  app.add_option("MAPS", maps_path, "MAPS product of the run (io.write_maps)")->required();
  app.add_option("TRUTH", truth_path, "truth.fits written by `cubeflow simulate galaxy`")->required();
  app.add_option("--json", json_path, "also write the figures as JSON");
  app.add_option("--light-band", light_band,
                 "truth PHOT_<band> map used as the light weight of spaxels within a bin (V-band-like)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  auto fail = [](const std::string& m) {
    std::cerr << "cubeflow compare: " << m << "\n";
    return 1;
  };
  auto binid_r = fits::ReadMap(maps_path, "BINID");
  if (!binid_r.ok()) return fail(binid_r.status().message() + " (is this a MAPS file written by io.write_maps?)");
  const Map& binid = **binid_r;
  std::shared_ptr<Map> quality;
  if (auto q = fits::ReadMap(maps_path, "QUALITY"); q.ok()) quality = *q;
  auto mass_r = fits::ReadMap(truth_path, "MASS");
  if (!mass_r.ok()) return fail(mass_r.status().message() + " (expected truth.fits of `cubeflow simulate galaxy`)");
  const Map& mass = **mass_r;
  auto light_r = fits::ReadMap(truth_path, "PHOT_" + light_band);
  if (!light_r.ok())
    return fail(light_r.status().message() + ": the light weights need PHOT_" + light_band +
                " (re-simulate the galaxy with this cubeflow, or choose --light-band)");
  const Map& light = **light_r;
  if (binid.nx != mass.nx || binid.ny != mass.ny)
    return fail(maps_path + " is " + std::to_string(binid.nx) + "x" + std::to_string(binid.ny) + " spaxels but " +
                truth_path + " is " + std::to_string(mass.nx) + "x" + std::to_string(mass.ny) +
                ": they are not the same galaxy");
  const int64_t np = binid.nx * binid.ny;

  std::ostringstream table, json;
  char line[256];
  std::snprintf(line, sizeof line, "%-10s %6s %10s %10s %10s %10s   %s\n", "quantity", "bins", "median", "scatter",
                "robust", "target", "");
  table << "per-bin truth - prediction (dex); truth weighted over each bin's spaxels by "
        << "mass (MW) or PHOT_" << light_band << " light (LW)\n"
        << line;
  json << "{\n  \"maps\": \"" << maps_path << "\",\n  \"truth\": \"" << truth_path << "\"";
  bool all_pass = true;
  int64_t nbins_used = 0;
  for (const Quantity& q : kQuantities) {
    auto pred_r = fits::ReadMap(maps_path, q.name);
    if (!pred_r.ok()) return fail(pred_r.status().message() + " (the run must include inference.cnn or inference.sbi)");
    auto truth_r = fits::ReadMap(truth_path, q.name);
    if (!truth_r.ok()) return fail(truth_r.status().message());
    const Map& pred = **pred_r;
    const Map& truth = **truth_r;
    const Map& w = std::string(q.weight) == "MASS" ? mass : light;
    struct Acc { double sw = 0, swx = 0, pred = NAN; bool skip = false; };
    std::map<int64_t, Acc> bins;
    for (int64_t i = 0; i < np; ++i) {
      const int64_t b = std::llround(binid.data[i]);
      if (b < 0) continue;
      Acc& a = bins[b];
      if (quality && (static_cast<uint32_t>(quality->data[i]) & skip_bits)) a.skip = true;
      if (std::isfinite(pred.data[i])) a.pred = pred.data[i];
      const double wi = w.data[i], ti = truth.data[i];
      if (std::isfinite(wi) && wi > 0 && std::isfinite(ti)) {
        a.sw += wi;
        a.swx += wi * ti;
      }
    }
    std::vector<double> d;
    for (const auto& [b, a] : bins)
      if (!a.skip && a.sw > 0 && std::isfinite(a.pred)) d.push_back(a.swx / a.sw - a.pred);
    nbins_used = std::max<int64_t>(nbins_used, static_cast<int64_t>(d.size()));
    const double med = Quantile(d, 0.5);
    double mean = 0, ss = 0;
    for (double x : d) mean += x;
    mean /= std::max<size_t>(d.size(), 1);
    for (double x : d) ss += (x - mean) * (x - mean);
    const double sd = d.size() > 1 ? std::sqrt(ss / (d.size() - 1)) : NAN;
    std::vector<double> dev;
    for (double x : d) dev.push_back(std::abs(x - med));
    const double robust = 1.4826 * Quantile(dev, 0.5);
    const bool pass = d.size() > 0 && std::abs(med) <= q.max_offset && sd <= q.max_scatter;
    all_pass = all_pass && pass;
    char target[48];
    std::snprintf(target, sizeof target, "<=%.2f,%.2f", q.max_offset, q.max_scatter);
    std::snprintf(line, sizeof line, "%-10s %6zu %+10.4f %10.4f %10.4f %10s   %s\n", q.name, d.size(), med, sd, robust,
                  target, pass ? "ok" : "MISSED");
    table << line;
    std::string lname = q.name;
    std::transform(lname.begin(), lname.end(), lname.begin(), ::tolower);
    json << ",\n  \"" << lname << "_median_offset\": " << (std::isfinite(med) ? Fmt(med) : "null") << ", \"" << lname
         << "_scatter\": " << (std::isfinite(sd) ? Fmt(sd) : "null") << ", \"" << lname
         << "_pass\": " << (pass ? "true" : "false");
  }
  json << ",\n  \"n_bins\": " << nbins_used << ",\n  \"all_pass\": " << (all_pass ? "true" : "false") << "\n}\n";
  std::cout << table.str();
  if (!json_path.empty()) {
    if (auto st = WriteFileAtomic(json_path, json.str()); !st.ok()) return fail(st.message());
  }
  return 0;
}

}  // namespace cubeflow::tools
