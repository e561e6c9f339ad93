// LoadMaraston05: the Maraston (2005) Kroupa-IMF SSPs from their ASCII distribution. See ssp.hpp.

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "cubeflow/sim/ssp.hpp"
#include "cubeflow/strings.hpp"

namespace cubeflow::sim {

namespace {

namespace fs = std::filesystem;

constexpr double kLsunErg = 3.828e33;    // erg/s (IAU 2015 nominal)
constexpr double kHc = 6.62607015e-27 * 2.99792458e10;  // erg cm
constexpr double kLymanLimit = 911.76;   // Angstrom

// The four sets with the full 67-age grid (1 kyr - 15 Gyr), by file name.
struct SetFile {
  const char* name;
  double zh;
};
constexpr SetFile kSets[] = {
    {"sed.krz0001.rhb", -1.35}, {"sed.krz001.rhb", -0.33}, {"sed.krz002.rhb", 0.00}, {"sed.krz004.rhb", 0.35}};

// One set: ages (Gyr) in file order and the flux blocks, all on one wavelength grid.
struct SetData {
  std::vector<double> age_gyr;
  std::vector<double> wave;
  std::vector<double> flux;  // [ia][iw], erg/s/A per M_sun
};

Result<SetData> ReadSet(const std::string& path, double zh_expected) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status::Error("cannot open Maraston (2005) SED file '" + path +
                         "' (the maraston05_kroupa directory needs sed.krz0001/001/002/004.rhb)");
  }
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  SetData s;
  const char* p = text.c_str();
  const char* end = p + text.size();
  int64_t line = 0;
  double last_age = -1;
  size_t n_in_block = 0;
  while (p < end) {
    // one line: age, [Z/H], lambda, L_lambda
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r')) ++p;
    if (p >= end) break;
    ++line;
    if (*p == '\n') { ++p; continue; }
    if (*p == '#') {
      while (p < end && *p != '\n') ++p;
      continue;
    }
    double v[4];
    for (int k = 0; k < 4; ++k) {
      char* q = nullptr;
      errno = 0;
      v[k] = std::strtod(p, &q);
      if (q == p || errno == ERANGE) {
        return Status::Error("Maraston (2005) SED file '" + path + "', line " + std::to_string(line) +
                             ": expected 4 numbers (age/Gyr, [Z/H], lambda/A, L_lambda/(erg/s/A))");
      }
      p = q;
    }
    while (p < end && *p != '\n') ++p;
    if (std::abs(v[1] - zh_expected) > 0.005) {
      return Status::Error("Maraston (2005) SED file '" + path + "', line " + std::to_string(line) + ": [Z/H] " +
                           Num(v[1]) + ", expected " + Num(zh_expected));
    }
    if (v[0] != last_age) {
      if (last_age >= 0 && n_in_block != s.wave.size()) {
        return Status::Error("Maraston (2005) SED file '" + path + "': the block of age " + Num(last_age) +
                             " Gyr has " + std::to_string(n_in_block) + " wavelengths, the first block " +
                             std::to_string(s.wave.size()));
      }
      if (!(v[0] > last_age)) {
        return Status::Error("Maraston (2005) SED file '" + path + "', line " + std::to_string(line) +
                             ": ages must increase block by block");
      }
      s.age_gyr.push_back(v[0]);
      last_age = v[0];
      n_in_block = 0;
    }
    if (s.age_gyr.size() == 1) {
      if (!s.wave.empty() && !(v[2] > s.wave.back())) {
        return Status::Error("Maraston (2005) SED file '" + path + "', line " + std::to_string(line) +
                             ": wavelengths must increase within a block");
      }
      s.wave.push_back(v[2]);
    } else if (n_in_block >= s.wave.size() || std::abs(v[2] - s.wave[n_in_block]) > 1e-6 * v[2]) {
      return Status::Error("Maraston (2005) SED file '" + path + "', line " + std::to_string(line) +
                           ": the wavelength grid differs from the first block's");
    }
    s.flux.push_back(v[3]);
    ++n_in_block;
  }
  if (s.age_gyr.empty() || n_in_block != s.wave.size()) {
    return Status::Error("Maraston (2005) SED file '" + path + "' is empty or its last block is incomplete");
  }
  return s;
}

// stellarmass.kroupa: [Z/H], age (Gyr), M*_T (stars + remnants), M*_alive, M*_WD, M*_NS, M*_BH,
// M_TO per unit initial mass. Keyed by (round([Z/H] * 100), round(age / kyr)); value (M*_T, M_TO).
using MassTable = std::map<std::pair<int, int64_t>, std::pair<double, double>>;
Result<MassTable> ReadMassTable(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::Error("cannot open Maraston (2005) mass table '" + path + "'");
  MassTable m;
  std::string line;
  int64_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    const std::string t = Trim(line);
    if (t.empty() || t[0] == '#') continue;
    std::istringstream ss(t);
    double zh = 0, age = 0, mt = 0, alive = 0, wd = 0, ns = 0, bh = 0, mto = 0;
    if (!(ss >> zh >> age >> mt >> alive >> wd >> ns >> bh >> mto)) {
      return Status::Error("Maraston (2005) mass table '" + path + "', line " + std::to_string(n) +
                           ": expected 8 columns ([Z/H], age/Gyr, M*_T, M*_alive, M*_WD, M*_NS, M*_BH, M_TO)");
    }
    m[{static_cast<int>(std::lround(zh * 100)), static_cast<int64_t>(std::llround(age * 1e6))}] = {mt, mto};
  }
  return m;
}

}  // namespace

Result<Maraston05Set> LoadMaraston05(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return Status::Error("Maraston (2005) directory '" + dir +
                         "' does not exist (it needs sed.krz0001/001/002/004.rhb and stellarmass.kroupa; set "
                         "CUBEFLOW_DATA_DIR to a folder with ssp/maraston05_kroupa, or give the directory)");
  }
  auto g = std::make_shared<SspGrid>();
  std::vector<SetData> sets;
  for (const auto& sf : kSets) {
    CUBEFLOW_ASSIGN_OR_RETURN(auto s, ReadSet((fs::path(dir) / sf.name).string(), sf.zh));
    if (!sets.empty() && (s.age_gyr != sets[0].age_gyr || s.wave != sets[0].wave)) {
      return Status::Error(std::string("Maraston (2005) SED file '") + sf.name + "' in '" + dir +
                           "' has another age or wavelength grid than " + kSets[0].name);
    }
    sets.push_back(std::move(s));
    g->metal.push_back(sf.zh);
  }
  CUBEFLOW_ASSIGN_OR_RETURN(auto masses, ReadMassTable((fs::path(dir) / "stellarmass.kroupa").string()));
  const SetData& s0 = sets[0];
  g->wave = s0.wave;
  for (double a : s0.age_gyr) g->log_age.push_back(std::log10(a * 1e9));
  const size_t nw = g->n_wave(), na = g->n_age(), nm = g->n_metal();
  g->flux.resize(nm * na * nw);
  g->mass_star.resize(nm * na);
  g->q_h.resize(nm * na);
  g->ml_v.resize(nm * na);
  std::vector<double> turnoff(nm * na), spec(nw);
  for (size_t im = 0; im < nm; ++im) {
    for (size_t ia = 0; ia < na; ++ia) {
      const double* src = sets[im].flux.data() + ia * nw;
      float* dst = g->flux.data() + (im * na + ia) * nw;
      double q = 0;
      for (size_t iw = 0; iw < nw; ++iw) {
        dst[iw] = static_cast<float>(src[iw] / kLsunErg);
        // ionising photons: integral of L_lambda lambda / (h c) below the Lyman limit (trapezoid)
        if (iw + 1 < nw && g->wave[iw] < kLymanLimit) {
          const double l0 = g->wave[iw], l1 = std::min(g->wave[iw + 1], kLymanLimit);
          const double f1 = src[iw] + (src[iw + 1] - src[iw]) * (l1 - l0) / (g->wave[iw + 1] - l0);
          q += 0.5 * (src[iw] * l0 + f1 * l1) * 1e-8 / kHc * (l1 - l0);
        }
      }
      g->q_h[im * na + ia] = q;
      const auto it = masses.find({static_cast<int>(std::lround(g->metal[im] * 100)),
                                   static_cast<int64_t>(std::llround(s0.age_gyr[ia] * 1e6))});
      if (it == masses.end()) {
        return Status::Error("Maraston (2005) mass table in '" + dir + "' has no row for [Z/H] " +
                             Num(g->metal[im]) + ", age " + Num(s0.age_gyr[ia]) + " Gyr");
      }
      g->mass_star[im * na + ia] = it->second.first;
      turnoff[im * na + ia] = it->second.second;
      for (size_t iw = 0; iw < nw; ++iw) spec[iw] = dst[iw];
      g->ml_v[im * na + ia] = g->mass_star[im * na + ia] / LuminosityV(g->wave, spec);
    }
  }
  g->name = "maraston05_kroupa";
  g->fwhm = 0;  // low resolution (R ~ 200-500), not a single FWHM
  g->notes = "Maraston (2005), Kroupa IMF, red horizontal branch, [Z/H] -1.35/-0.33/0.00/+0.35 x " +
             std::to_string(na) + " ages (1 kyr - 15 Gyr) from " + dir +
             "; mass_star = M*_T of stellarmass.kroupa; q_h integrated below 912 A; ml_v = mass_star / L_V "
             "(LuminosityV)";
  CUBEFLOW_RETURN_NOT_OK(g->Validate());
  return Maraston05Set{g, std::move(turnoff)};
}

}  // namespace cubeflow::sim
