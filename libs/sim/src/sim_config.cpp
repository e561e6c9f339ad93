// YAML configuration of the forward model (LoadSimConfig / SimConfigToYaml).
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <type_traits>
#include <vector>

#include "cubeflow/sim/observables.hpp"

namespace cubeflow::sim {
namespace {

/// Reads the keys of one YAML mapping into the config (LoadSimConfig); remembers the keys it
/// was asked for, so that CheckUnknown can name a misspelt one.
class Reader {
 public:
  Reader(const YAML::Node& n, std::string where, std::string file)
      : n_(n), where_(std::move(where)), file_(std::move(file)) {}
  template <typename T>
  Status Field(const char* key, T& out) {
    seen_.insert(key);
    if (!n_ || n_.IsNull()) return Status::OK();
    CUBEFLOW_RETURN_NOT_OK(CheckMapping());  // operator[] throws on a scalar
    if (!n_[key]) return Status::OK();
    try {
      out = n_[key].as<T>();
    } catch (const std::exception& e) {
      return Status::Error(file_ + ": key '" + where_ + key + "' has the wrong type (" + e.what() + ")");
    }
    return Status::OK();
  }
  /// The mapping `key`, read by `body(Reader&)`; then its unknown keys are errors.
  template <typename Body>
  Status Section(const char* key, Body&& body) {
    seen_.insert(key);
    Reader sub(n_ && n_.IsMap() ? n_[key] : YAML::Node(), where_ + key + ".", file_);
    CUBEFLOW_RETURN_NOT_OK(body(sub));
    return sub.CheckUnknown();
  }
  /// An error "FILE: <message>" unless `ok`.
  Status Check(bool ok, const std::string& message) const {
    return ok ? Status::OK() : Status::Error(file_ + ": " + message);
  }
  Status CheckUnknown() const {
    if (!n_ || n_.IsNull()) return Status::OK();
    CUBEFLOW_RETURN_NOT_OK(CheckMapping());
    for (const auto& kv : n_) {
      if (!kv.first.IsScalar())
        return Status::Error(file_ + ":" + std::to_string(kv.first.Mark().line + 1) + ": a key of " + What() +
                             " is not a name (see docs/forward_model.md for the keys)");
      const std::string k = kv.first.Scalar();
      if (!seen_.count(k))
        return Status::Error(file_ + ": unknown key '" + where_ + k + "' (see docs/forward_model.md for the keys)");
    }
    return Status::OK();
  }

 private:
  /// "the top level" or "'mixture'".
  std::string What() const {
    return where_.empty() ? std::string("the top level") : "'" + where_.substr(0, where_.size() - 1) + "'";
  }
  Status CheckMapping() const {
    if (n_.IsMap()) return Status::OK();
    return Status::Error(file_ + ":" + std::to_string(n_.Mark().line + 1) + ": " + What() +
                         " must be a mapping of keys to values (see docs/forward_model.md)");
  }

  YAML::Node n_;
  std::string where_, file_;
  std::set<std::string> seen_;
};

/// Writes the keys as YAML (SimConfigToYaml): sections as flow mappings, lists in flow style.
class Writer {
 public:
  explicit Writer(YAML::Emitter& e) : e_(e) {}
  template <typename T>
  Status Field(const char* key, T& value) {
    e_ << YAML::Key << key << YAML::Value;
    if constexpr (IsVector<T>::value) e_ << YAML::Flow;
    e_ << value;
    return Status::OK();
  }
  template <typename Body>
  Status Section(const char* key, Body&& body) {
    e_ << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginMap;
    CUBEFLOW_RETURN_NOT_OK(body(*this));
    e_ << YAML::EndMap;
    return Status::OK();
  }
  /// The writer prints what it is given.
  Status Check(bool, const std::string&) const { return Status::OK(); }

 private:
  template <typename T>
  struct IsVector : std::false_type {};
  template <typename T>
  struct IsVector<std::vector<T>> : std::true_type {};
  YAML::Emitter& e_;
};

/// Every key of the YAML config, once, in file order: the reader fills `c` from them and the
/// writer prints `c` with them. Checks of a single value that the following keys need sit here.
template <typename V>
Status VisitConfig(V& v, SimConfig& c) {
  CUBEFLOW_RETURN_NOT_OK(v.Field("ssp", c.ssp));
  CUBEFLOW_RETURN_NOT_OK(v.Field("ssp_name_contains", c.ssp_name_contains));
  CUBEFLOW_RETURN_NOT_OK(v.Field("ssp_emiles_dir", c.ssp_emiles_dir));
  CUBEFLOW_RETURN_NOT_OK(v.Field("ssp_maraston_dir", c.ssp_maraston_dir));
  CUBEFLOW_RETURN_NOT_OK(v.Field("ssp_young_min_age", c.ssp_young_min_age));
  CUBEFLOW_RETURN_NOT_OK(v.Check(c.ssp_young_min_age > 0 && c.ssp_young_min_age < 0.025,
                                 "ssp_young_min_age must be > 0 and < 0.025 Gyr"));
  CUBEFLOW_RETURN_NOT_OK(v.Field("total_mass", c.sfh.total_mass));
  CUBEFLOW_RETURN_NOT_OK(v.Section("mixture", [&](V& s) -> Status {
    CUBEFLOW_RETURN_NOT_OK(s.Field("nonparametric", c.sfh.w_nonparametric));
    CUBEFLOW_RETURN_NOT_OK(s.Field("skewnormal", c.sfh.w_skewnormal));
    CUBEFLOW_RETURN_NOT_OK(s.Field("skewnormal_burst", c.sfh.w_skewnormal_burst));
    return s.Field("dense_basis", c.sfh.w_dense_basis);
  }));
  CUBEFLOW_RETURN_NOT_OK(v.Section("cosmology", [&](V& s) -> Status {
    CUBEFLOW_RETURN_NOT_OK(s.Field("h0", c.sfh.cosmology.h0));
    return s.Field("omega_m", c.sfh.cosmology.omega_m);
  }));
  CUBEFLOW_RETURN_NOT_OK(v.Section("nonparametric", [&](V& s) -> Status {
    std::string dist = c.sfh.ssfr_log_uniform ? "log-uniform" : "uniform";
    CUBEFLOW_RETURN_NOT_OK(s.Field("dirichlet_alpha", c.sfh.dirichlet_alpha));
    CUBEFLOW_RETURN_NOT_OK(s.Field("ssfr_min", c.sfh.ssfr_min));
    CUBEFLOW_RETURN_NOT_OK(s.Field("ssfr_max", c.sfh.ssfr_max));
    CUBEFLOW_RETURN_NOT_OK(s.Field("ssfr_distribution", dist));
    CUBEFLOW_RETURN_NOT_OK(s.Check(dist == "uniform" || dist == "log-uniform",
                                   "nonparametric.ssfr_distribution must be uniform or log-uniform"));
    c.sfh.ssfr_log_uniform = dist == "log-uniform";
    return Status::OK();
  }));
  CUBEFLOW_RETURN_NOT_OK(v.Section("dense_basis", [&](V& s) -> Status {
    std::string dist = c.sfh.db_ssfr_log_uniform ? "log-uniform" : "uniform";
    CUBEFLOW_RETURN_NOT_OK(s.Field("dirichlet_alpha", c.sfh.db_dirichlet_alpha));
    CUBEFLOW_RETURN_NOT_OK(s.Field("ssfr_min", c.sfh.db_ssfr_min));
    CUBEFLOW_RETURN_NOT_OK(s.Field("ssfr_max", c.sfh.db_ssfr_max));
    CUBEFLOW_RETURN_NOT_OK(s.Field("ssfr_distribution", dist));
    CUBEFLOW_RETURN_NOT_OK(s.Check(dist == "uniform" || dist == "log-uniform",
                                   "dense_basis.ssfr_distribution must be uniform or log-uniform"));
    c.sfh.db_ssfr_log_uniform = dist == "log-uniform";
    return s.Field("tail_fraction", c.sfh.db_tail_fraction);
  }));
  CUBEFLOW_RETURN_NOT_OK(v.Section("skewnormal", [&](V& s) -> Status {
    CUBEFLOW_RETURN_NOT_OK(s.Field("peak_mean", c.sfh.peak_mean));
    CUBEFLOW_RETURN_NOT_OK(s.Field("peak_sigma", c.sfh.peak_sigma));
    CUBEFLOW_RETURN_NOT_OK(s.Field("width_mean", c.sfh.width_mean));
    CUBEFLOW_RETURN_NOT_OK(s.Field("width_sigma", c.sfh.width_sigma));
    CUBEFLOW_RETURN_NOT_OK(s.Field("width_min", c.sfh.width_min));
    CUBEFLOW_RETURN_NOT_OK(s.Field("skew_min", c.sfh.skew_min));
    CUBEFLOW_RETURN_NOT_OK(s.Field("skew_max", c.sfh.skew_max));
    CUBEFLOW_RETURN_NOT_OK(s.Field("t_max", c.sfh.t_max));
    return s.Field("clip_to_universe_age", c.sfh.clip_to_universe_age);
  }));
  CUBEFLOW_RETURN_NOT_OK(v.Section("burst", [&](V& s) -> Status {
    CUBEFLOW_RETURN_NOT_OK(s.Field("age_min", c.sfh.burst_age_min));
    CUBEFLOW_RETURN_NOT_OK(s.Field("age_max", c.sfh.burst_age_max));
    CUBEFLOW_RETURN_NOT_OK(s.Field("width_min", c.sfh.burst_width_min));
    CUBEFLOW_RETURN_NOT_OK(s.Field("width_max", c.sfh.burst_width_max));
    CUBEFLOW_RETURN_NOT_OK(s.Field("frac_min", c.sfh.burst_frac_min));
    return s.Field("frac_max", c.sfh.burst_frac_max);
  }));
  CUBEFLOW_RETURN_NOT_OK(v.Section("metallicity", [&](V& s) -> Status {
    CUBEFLOW_RETURN_NOT_OK(s.Field("z_start", c.sfh.z_start));
    CUBEFLOW_RETURN_NOT_OK(s.Field("z_final_min", c.sfh.z_final_min));
    CUBEFLOW_RETURN_NOT_OK(s.Field("z_final_max", c.sfh.z_final_max));
    CUBEFLOW_RETURN_NOT_OK(s.Field("z_sun", c.sfh.z_sun));
    std::string law = c.sfh.constant_metallicity ? "constant" : "enrichment";
    CUBEFLOW_RETURN_NOT_OK(s.Field("law", law));
    CUBEFLOW_RETURN_NOT_OK(s.Check(law == "enrichment" || law == "constant",
                                   "metallicity.law must be enrichment (eq. 2 of paper 004) or constant (one [M/H] "
                                   "per object, uniform in [mh_min, mh_max])"));
    c.sfh.constant_metallicity = law == "constant";
    CUBEFLOW_RETURN_NOT_OK(s.Field("mh_min", c.sfh.mh_min));
    return s.Field("mh_max", c.sfh.mh_max);
  }));
  CUBEFLOW_RETURN_NOT_OK(v.Section("dust", [&](V& s) -> Status {
    CUBEFLOW_RETURN_NOT_OK(s.Field("enabled", c.dust.enabled));
    CUBEFLOW_RETURN_NOT_OK(s.Field("tau_bc_min", c.dust.tau_bc_min));
    CUBEFLOW_RETURN_NOT_OK(s.Field("tau_bc_max", c.dust.tau_bc_max));
    CUBEFLOW_RETURN_NOT_OK(s.Field("tau_ism_mean", c.dust.tau_ism_mean));
    CUBEFLOW_RETURN_NOT_OK(s.Field("tau_ism_sigma", c.dust.tau_ism_sigma));
    CUBEFLOW_RETURN_NOT_OK(s.Field("slope", c.dust.slope));
    CUBEFLOW_RETURN_NOT_OK(s.Field("pivot", c.dust.pivot));
    return s.Field("bc_age", c.dust.bc_age_gyr);
  }));
  CUBEFLOW_RETURN_NOT_OK(v.Section("nebular", [&](V& s) -> Status {
    CUBEFLOW_RETURN_NOT_OK(s.Field("enabled", c.nebular.enabled));
    CUBEFLOW_RETURN_NOT_OK(s.Field("f_esc", c.nebular.f_esc));
    CUBEFLOW_RETURN_NOT_OK(s.Field("halpha_per_qh", c.nebular.halpha_per_qh));
    CUBEFLOW_RETURN_NOT_OK(s.Field("balmer_decrement", c.nebular.balmer_decrement));
    return s.Field("sii_ratio", c.nebular.sii_ratio);
  }));
  CUBEFLOW_RETURN_NOT_OK(v.Section("spectrum", [&](V& s) -> Status {
    double start = c.obs.wave.crval, step = c.obs.wave.cdelt;
    int64_t n = c.obs.wave.n;
    CUBEFLOW_RETURN_NOT_OK(s.Field("wave_start", start));
    CUBEFLOW_RETURN_NOT_OK(s.Field("wave_step", step));
    CUBEFLOW_RETURN_NOT_OK(s.Field("n_wave", n));
    CUBEFLOW_RETURN_NOT_OK(s.Check(step > 0 && n >= 2, "spectrum.wave_step must be > 0 and n_wave >= 2"));
    c.obs.wave = WavelengthAxis::Linear(start, step, n);
    CUBEFLOW_RETURN_NOT_OK(s.Field("sigma_kms", c.obs.sigma_kms));
    CUBEFLOW_RETURN_NOT_OK(s.Field("lsf", c.obs.lsf));
    CUBEFLOW_RETURN_NOT_OK(s.Field("ssp_fwhm", c.obs.ssp_fwhm));
    CUBEFLOW_RETURN_NOT_OK(s.Field("allow_coarse_ssp", c.obs.allow_coarse_ssp));
    CUBEFLOW_RETURN_NOT_OK(s.Field("norm_min", c.obs.norm_min));
    CUBEFLOW_RETURN_NOT_OK(s.Field("norm_max", c.obs.norm_max));
    CUBEFLOW_RETURN_NOT_OK(s.Field("substeps_per_bin", c.obs.substeps_per_bin));
    CUBEFLOW_RETURN_NOT_OK(s.Field("ages_per_step", c.obs.ages_per_step));
    return s.Field("mass_label", c.obs.mass_label);
  }));
  CUBEFLOW_RETURN_NOT_OK(v.Section("photometry", [&](V& s) -> Status {
    CUBEFLOW_RETURN_NOT_OK(s.Field("bands", c.obs.bands));
    return s.Field("filter_dir", c.obs.filter_dir);
  }));
  return v.Section("noise", [&](V& s) -> Status {
    CUBEFLOW_RETURN_NOT_OK(s.Field("enabled", c.noise.enabled));
    CUBEFLOW_RETURN_NOT_OK(s.Field("snr", c.noise.snr));
    CUBEFLOW_RETURN_NOT_OK(s.Field("phot_snr", c.noise.phot_snr));
    return s.Field("error_spectrum", c.error_spectrum_path);
  });
}

Result<std::vector<double>> ReadErrorSpectrum(const std::string& path, const WavelengthAxis& axis) {
  std::ifstream in(path);
  if (!in) return Status::Error("noise.error_spectrum: cannot open '" + path + "'");
  std::vector<double> w, e;
  std::string line;
  int cols = -1;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    for (char& c : line) if (c == ',') c = ' ';
    std::istringstream ss(line);
    std::vector<double> v;
    double x;
    while (ss >> x) v.push_back(x);
    if (v.empty()) continue;
    if (cols < 0) cols = static_cast<int>(v.size());
    if (static_cast<int>(v.size()) != cols || cols > 2)
      return Status::Error("noise.error_spectrum '" + path + "': expected 1 column (error per model pixel) or 2 (wavelength, error)");
    if (cols == 2) { w.push_back(v[0]); e.push_back(v[1]); } else { e.push_back(v[0]); }
  }
  if (cols == 1) {
    if (static_cast<int64_t>(e.size()) != axis.n)
      return Status::Error("noise.error_spectrum '" + path + "': " + std::to_string(e.size()) +
                           " values, the spectrum grid has " + std::to_string(axis.n));
    return e;
  }
  if (w.size() < 2) return Status::Error("noise.error_spectrum '" + path + "': fewer than 2 rows");
  std::vector<double> out(axis.n);
  for (int64_t i = 0; i < axis.n; ++i) {
    const double l = axis.At(i);
    auto it = std::upper_bound(w.begin(), w.end(), l);
    size_t k = std::clamp<size_t>(static_cast<size_t>(it - w.begin()), 1, w.size() - 1);
    const double t = std::clamp((l - w[k - 1]) / (w[k] - w[k - 1]), 0.0, 1.0);
    out[i] = e[k - 1] + t * (e[k] - e[k - 1]);
  }
  return out;
}

/// The config in `root` (read from `path`, which names it in messages); relative paths are
/// taken relative to `base` (a directory; empty: left as they are).
Result<SimConfig> ParseConfig(const YAML::Node& root, const std::string& path, const std::filesystem::path& base) {
  SimConfig c;
  if (!root || root.IsNull()) return c;
  Reader top(root, "", path);
  CUBEFLOW_RETURN_NOT_OK(VisitConfig(top, c));
  CUBEFLOW_RETURN_NOT_OK(top.CheckUnknown());
  auto resolve = [&](std::string& p) {
    if (!base.empty() && !p.empty() && p != "builtin" && p != "emiles" && std::filesystem::path(p).is_relative())
      p = (base / p).string();
  };
  resolve(c.ssp);
  resolve(c.ssp_emiles_dir);
  resolve(c.ssp_maraston_dir);
  resolve(c.obs.filter_dir);
  resolve(c.error_spectrum_path);
  if (!c.error_spectrum_path.empty()) {
    auto errors = ReadErrorSpectrum(c.error_spectrum_path, c.obs.wave);
    if (!errors.ok()) return Status::Error(path + ": " + errors.status().message());
    c.noise.error_spectrum = std::move(*errors);
  }
  const double wsum = c.sfh.w_nonparametric + c.sfh.w_skewnormal + c.sfh.w_skewnormal_burst + c.sfh.w_dense_basis;
  if (!(wsum > 0) || c.sfh.w_nonparametric < 0 || c.sfh.w_skewnormal < 0 || c.sfh.w_skewnormal_burst < 0 ||
      c.sfh.w_dense_basis < 0)
    return Status::Error(path + ": mixture weights must be >= 0 with a positive sum");
  if (!(c.sfh.ssfr_min > 0) || c.sfh.ssfr_max < c.sfh.ssfr_min)
    return Status::Error(path + ": nonparametric.ssfr_min must be > 0 and <= ssfr_max");
  if (!(c.sfh.db_ssfr_min > 0) || c.sfh.db_ssfr_max < c.sfh.db_ssfr_min)
    return Status::Error(path + ": dense_basis.ssfr_min must be > 0 and <= ssfr_max");
  if (!(c.sfh.db_dirichlet_alpha > 0) || !(c.sfh.dirichlet_alpha > 0))
    return Status::Error(path + ": dirichlet_alpha must be > 0");
  if (!(c.sfh.db_tail_fraction >= 0 && c.sfh.db_tail_fraction < 0.25))
    return Status::Error(path + ": dense_basis.tail_fraction must be in [0, 0.25) (the mass after t75 is 0.25)");
  if (c.sfh.constant_metallicity && !(c.sfh.mh_min <= c.sfh.mh_max))
    return Status::Error(path + ": metallicity.mh_min must be <= mh_max");
  if (!(c.dust.tau_bc_min > 0) || c.dust.tau_bc_max < c.dust.tau_bc_min)
    return Status::Error(path + ": dust.tau_bc_min must be > 0 and <= tau_bc_max");
  return c;
}

}  // namespace

Result<SimConfig> LoadSimConfig(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const std::exception& e) {
    return Status::Error("simulation config '" + path + "': " + e.what());
  }
  // relative paths are relative to the config file
  return ParseConfig(root, path, std::filesystem::path(path).parent_path());
}

Result<SimConfig> ParseSimConfig(const std::string& yaml_text, const std::string& where) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const std::exception& e) {
    return Status::Error("simulation config in " + where + ": " + e.what());
  }
  return ParseConfig(root, where, {});
}

SspSource SspSourceOf(const SimConfig& c) {
  SspSource s;
  s.ssp = c.ssp;
  s.name_contains = c.ssp_name_contains;
  s.emiles_dir = c.ssp_emiles_dir;
  s.maraston_dir = c.ssp_maraston_dir;
  s.young_min_age_gyr = c.ssp_young_min_age;
  return s;
}

std::string SimConfigToYaml(const SimConfig& c) {
  YAML::Emitter e;
  Writer w(e);
  SimConfig copy = c;
  e << YAML::BeginMap;
  (void)VisitConfig(w, copy);  // the writer never fails
  e << YAML::EndMap;
  return e.c_str();
}

}  // namespace cubeflow::sim
