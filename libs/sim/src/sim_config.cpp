// YAML configuration of the forward model (LoadSimConfig / SimConfigToYaml).
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "cubeflow/sim/observables.hpp"

namespace cubeflow::sim {
namespace {

class Section {
 public:
  Section(const YAML::Node& n, std::string where, std::string file)
      : n_(n), where_(std::move(where)), file_(std::move(file)) {}
  bool valid() const { return n_ && n_.IsMap(); }
  template <typename T>
  Status Get(const char* key, T* out) {
    seen_.insert(key);
    if (!n_ || !n_[key]) return Status::OK();
    try {
      *out = n_[key].as<T>();
    } catch (const std::exception& e) {
      return Status::Error(file_ + ": key '" + where_ + key + "' has the wrong type (" + e.what() + ")");
    }
    return Status::OK();
  }
  Section Sub(const char* key) {
    seen_.insert(key);
    return Section(n_ ? n_[key] : YAML::Node(), where_ + key + ".", file_);
  }
  Status CheckUnknown() const {
    if (!n_) return Status::OK();
    if (!n_.IsMap()) return Status::Error(file_ + ": '" + where_ + "' must be a mapping");
    for (const auto& kv : n_) {
      const std::string k = kv.first.as<std::string>();
      if (!seen_.count(k))
        return Status::Error(file_ + ": unknown key '" + where_ + k + "' (see docs/forward_model.md for the keys)");
    }
    return Status::OK();
  }

 private:
  YAML::Node n_;
  std::string where_, file_;
  std::set<std::string> seen_;
};

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

}  // namespace

Result<SimConfig> LoadSimConfig(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const std::exception& e) {
    return Status::Error("simulation config '" + path + "': " + e.what());
  }
  SimConfig c;
  if (!root || root.IsNull()) return c;
  Section top(root, "", path);
  CUBEFLOW_RETURN_NOT_OK(top.Get("ssp", &c.ssp));
  CUBEFLOW_RETURN_NOT_OK(top.Get("ssp_name_contains", &c.ssp_name_contains));
  CUBEFLOW_RETURN_NOT_OK(top.Get("total_mass", &c.sfh.total_mass));
  {
    auto s = top.Sub("mixture");
    CUBEFLOW_RETURN_NOT_OK(s.Get("nonparametric", &c.sfh.w_nonparametric));
    CUBEFLOW_RETURN_NOT_OK(s.Get("skewnormal", &c.sfh.w_skewnormal));
    CUBEFLOW_RETURN_NOT_OK(s.Get("skewnormal_burst", &c.sfh.w_skewnormal_burst));
    CUBEFLOW_RETURN_NOT_OK(s.CheckUnknown());
  }
  {
    auto s = top.Sub("cosmology");
    CUBEFLOW_RETURN_NOT_OK(s.Get("h0", &c.sfh.cosmology.h0));
    CUBEFLOW_RETURN_NOT_OK(s.Get("omega_m", &c.sfh.cosmology.omega_m));
    CUBEFLOW_RETURN_NOT_OK(s.CheckUnknown());
  }
  {
    auto s = top.Sub("nonparametric");
    std::string dist = c.sfh.ssfr_log_uniform ? "log-uniform" : "uniform";
    CUBEFLOW_RETURN_NOT_OK(s.Get("dirichlet_alpha", &c.sfh.dirichlet_alpha));
    CUBEFLOW_RETURN_NOT_OK(s.Get("ssfr_min", &c.sfh.ssfr_min));
    CUBEFLOW_RETURN_NOT_OK(s.Get("ssfr_max", &c.sfh.ssfr_max));
    CUBEFLOW_RETURN_NOT_OK(s.Get("ssfr_distribution", &dist));
    if (dist != "uniform" && dist != "log-uniform")
      return Status::Error(path + ": nonparametric.ssfr_distribution must be uniform or log-uniform");
    c.sfh.ssfr_log_uniform = dist == "log-uniform";
    CUBEFLOW_RETURN_NOT_OK(s.CheckUnknown());
  }
  {
    auto s = top.Sub("skewnormal");
    CUBEFLOW_RETURN_NOT_OK(s.Get("peak_mean", &c.sfh.peak_mean));
    CUBEFLOW_RETURN_NOT_OK(s.Get("peak_sigma", &c.sfh.peak_sigma));
    CUBEFLOW_RETURN_NOT_OK(s.Get("width_mean", &c.sfh.width_mean));
    CUBEFLOW_RETURN_NOT_OK(s.Get("width_sigma", &c.sfh.width_sigma));
    CUBEFLOW_RETURN_NOT_OK(s.Get("width_min", &c.sfh.width_min));
    CUBEFLOW_RETURN_NOT_OK(s.Get("skew_min", &c.sfh.skew_min));
    CUBEFLOW_RETURN_NOT_OK(s.Get("skew_max", &c.sfh.skew_max));
    CUBEFLOW_RETURN_NOT_OK(s.Get("t_max", &c.sfh.t_max));
    CUBEFLOW_RETURN_NOT_OK(s.Get("clip_to_universe_age", &c.sfh.clip_to_universe_age));
    CUBEFLOW_RETURN_NOT_OK(s.CheckUnknown());
  }
  {
    auto s = top.Sub("burst");
    CUBEFLOW_RETURN_NOT_OK(s.Get("age_min", &c.sfh.burst_age_min));
    CUBEFLOW_RETURN_NOT_OK(s.Get("age_max", &c.sfh.burst_age_max));
    CUBEFLOW_RETURN_NOT_OK(s.Get("width_min", &c.sfh.burst_width_min));
    CUBEFLOW_RETURN_NOT_OK(s.Get("width_max", &c.sfh.burst_width_max));
    CUBEFLOW_RETURN_NOT_OK(s.Get("frac_min", &c.sfh.burst_frac_min));
    CUBEFLOW_RETURN_NOT_OK(s.Get("frac_max", &c.sfh.burst_frac_max));
    CUBEFLOW_RETURN_NOT_OK(s.CheckUnknown());
  }
  {
    auto s = top.Sub("metallicity");
    CUBEFLOW_RETURN_NOT_OK(s.Get("z_start", &c.sfh.z_start));
    CUBEFLOW_RETURN_NOT_OK(s.Get("z_final_min", &c.sfh.z_final_min));
    CUBEFLOW_RETURN_NOT_OK(s.Get("z_final_max", &c.sfh.z_final_max));
    CUBEFLOW_RETURN_NOT_OK(s.Get("z_sun", &c.sfh.z_sun));
    CUBEFLOW_RETURN_NOT_OK(s.CheckUnknown());
  }
  {
    auto s = top.Sub("dust");
    CUBEFLOW_RETURN_NOT_OK(s.Get("enabled", &c.dust.enabled));
    CUBEFLOW_RETURN_NOT_OK(s.Get("tau_bc_min", &c.dust.tau_bc_min));
    CUBEFLOW_RETURN_NOT_OK(s.Get("tau_bc_max", &c.dust.tau_bc_max));
    CUBEFLOW_RETURN_NOT_OK(s.Get("tau_ism_mean", &c.dust.tau_ism_mean));
    CUBEFLOW_RETURN_NOT_OK(s.Get("tau_ism_sigma", &c.dust.tau_ism_sigma));
    CUBEFLOW_RETURN_NOT_OK(s.Get("slope", &c.dust.slope));
    CUBEFLOW_RETURN_NOT_OK(s.Get("pivot", &c.dust.pivot));
    CUBEFLOW_RETURN_NOT_OK(s.Get("bc_age", &c.dust.bc_age_gyr));
    CUBEFLOW_RETURN_NOT_OK(s.CheckUnknown());
  }
  {
    auto s = top.Sub("nebular");
    CUBEFLOW_RETURN_NOT_OK(s.Get("enabled", &c.nebular.enabled));
    CUBEFLOW_RETURN_NOT_OK(s.Get("f_esc", &c.nebular.f_esc));
    CUBEFLOW_RETURN_NOT_OK(s.Get("halpha_per_qh", &c.nebular.halpha_per_qh));
    CUBEFLOW_RETURN_NOT_OK(s.Get("balmer_decrement", &c.nebular.balmer_decrement));
    CUBEFLOW_RETURN_NOT_OK(s.Get("sii_ratio", &c.nebular.sii_ratio));
    CUBEFLOW_RETURN_NOT_OK(s.CheckUnknown());
  }
  {
    auto s = top.Sub("spectrum");
    double start = c.obs.wave.crval, step = c.obs.wave.cdelt;
    int64_t n = c.obs.wave.n;
    CUBEFLOW_RETURN_NOT_OK(s.Get("wave_start", &start));
    CUBEFLOW_RETURN_NOT_OK(s.Get("wave_step", &step));
    CUBEFLOW_RETURN_NOT_OK(s.Get("n_wave", &n));
    if (step <= 0 || n < 2) return Status::Error(path + ": spectrum.wave_step must be > 0 and n_wave >= 2");
    c.obs.wave = WavelengthAxis::Linear(start, step, n);
    CUBEFLOW_RETURN_NOT_OK(s.Get("sigma_kms", &c.obs.sigma_kms));
    CUBEFLOW_RETURN_NOT_OK(s.Get("lsf", &c.obs.lsf));
    CUBEFLOW_RETURN_NOT_OK(s.Get("ssp_fwhm", &c.obs.ssp_fwhm));
    CUBEFLOW_RETURN_NOT_OK(s.Get("norm_min", &c.obs.norm_min));
    CUBEFLOW_RETURN_NOT_OK(s.Get("norm_max", &c.obs.norm_max));
    CUBEFLOW_RETURN_NOT_OK(s.Get("substeps_per_bin", &c.obs.substeps_per_bin));
    CUBEFLOW_RETURN_NOT_OK(s.Get("ages_per_step", &c.obs.ages_per_step));
    CUBEFLOW_RETURN_NOT_OK(s.Get("mass_label", &c.obs.mass_label));
    CUBEFLOW_RETURN_NOT_OK(s.CheckUnknown());
  }
  {
    auto s = top.Sub("photometry");
    CUBEFLOW_RETURN_NOT_OK(s.Get("bands", &c.obs.bands));
    CUBEFLOW_RETURN_NOT_OK(s.Get("filter_dir", &c.obs.filter_dir));
    CUBEFLOW_RETURN_NOT_OK(s.CheckUnknown());
  }
  {
    auto s = top.Sub("noise");
    CUBEFLOW_RETURN_NOT_OK(s.Get("enabled", &c.noise.enabled));
    CUBEFLOW_RETURN_NOT_OK(s.Get("snr", &c.noise.snr));
    CUBEFLOW_RETURN_NOT_OK(s.Get("phot_snr", &c.noise.phot_snr));
    CUBEFLOW_RETURN_NOT_OK(s.Get("error_spectrum", &c.error_spectrum_path));
    CUBEFLOW_RETURN_NOT_OK(s.CheckUnknown());
  }
  CUBEFLOW_RETURN_NOT_OK(top.CheckUnknown());
  // relative paths are relative to the config file
  const auto base = std::filesystem::path(path).parent_path();
  auto resolve = [&](std::string& p) {
    if (!p.empty() && p != "builtin" && std::filesystem::path(p).is_relative()) p = (base / p).string();
  };
  resolve(c.ssp);
  resolve(c.obs.filter_dir);
  resolve(c.error_spectrum_path);
  if (!c.error_spectrum_path.empty()) {
    CUBEFLOW_ASSIGN_OR_RETURN(c.noise.error_spectrum, ReadErrorSpectrum(c.error_spectrum_path, c.obs.wave));
  }
  const double wsum = c.sfh.w_nonparametric + c.sfh.w_skewnormal + c.sfh.w_skewnormal_burst;
  if (!(wsum > 0) || c.sfh.w_nonparametric < 0 || c.sfh.w_skewnormal < 0 || c.sfh.w_skewnormal_burst < 0)
    return Status::Error(path + ": mixture weights must be >= 0 with a positive sum");
  if (!(c.sfh.ssfr_min > 0) || c.sfh.ssfr_max < c.sfh.ssfr_min)
    return Status::Error(path + ": nonparametric.ssfr_min must be > 0 and <= ssfr_max");
  if (!(c.dust.tau_bc_min > 0) || c.dust.tau_bc_max < c.dust.tau_bc_min)
    return Status::Error(path + ": dust.tau_bc_min must be > 0 and <= tau_bc_max");
  return c;
}

std::string SimConfigToYaml(const SimConfig& c) {
  YAML::Emitter e;
  e << YAML::BeginMap;
  e << YAML::Key << "ssp" << YAML::Value << c.ssp;
  e << YAML::Key << "ssp_name_contains" << YAML::Value << c.ssp_name_contains;
  e << YAML::Key << "total_mass" << YAML::Value << c.sfh.total_mass;
  e << YAML::Key << "mixture" << YAML::Value << YAML::Flow << YAML::BeginMap
    << YAML::Key << "nonparametric" << YAML::Value << c.sfh.w_nonparametric
    << YAML::Key << "skewnormal" << YAML::Value << c.sfh.w_skewnormal
    << YAML::Key << "skewnormal_burst" << YAML::Value << c.sfh.w_skewnormal_burst << YAML::EndMap;
  e << YAML::Key << "cosmology" << YAML::Value << YAML::Flow << YAML::BeginMap
    << YAML::Key << "h0" << YAML::Value << c.sfh.cosmology.h0
    << YAML::Key << "omega_m" << YAML::Value << c.sfh.cosmology.omega_m << YAML::EndMap;
  e << YAML::Key << "nonparametric" << YAML::Value << YAML::Flow << YAML::BeginMap
    << YAML::Key << "dirichlet_alpha" << YAML::Value << c.sfh.dirichlet_alpha
    << YAML::Key << "ssfr_min" << YAML::Value << c.sfh.ssfr_min
    << YAML::Key << "ssfr_max" << YAML::Value << c.sfh.ssfr_max
    << YAML::Key << "ssfr_distribution" << YAML::Value << (c.sfh.ssfr_log_uniform ? "log-uniform" : "uniform")
    << YAML::EndMap;
  e << YAML::Key << "skewnormal" << YAML::Value << YAML::Flow << YAML::BeginMap
    << YAML::Key << "peak_mean" << YAML::Value << c.sfh.peak_mean
    << YAML::Key << "peak_sigma" << YAML::Value << c.sfh.peak_sigma
    << YAML::Key << "width_mean" << YAML::Value << c.sfh.width_mean
    << YAML::Key << "width_sigma" << YAML::Value << c.sfh.width_sigma
    << YAML::Key << "width_min" << YAML::Value << c.sfh.width_min
    << YAML::Key << "skew_min" << YAML::Value << c.sfh.skew_min
    << YAML::Key << "skew_max" << YAML::Value << c.sfh.skew_max
    << YAML::Key << "t_max" << YAML::Value << c.sfh.t_max
    << YAML::Key << "clip_to_universe_age" << YAML::Value << c.sfh.clip_to_universe_age << YAML::EndMap;
  e << YAML::Key << "burst" << YAML::Value << YAML::Flow << YAML::BeginMap
    << YAML::Key << "age_min" << YAML::Value << c.sfh.burst_age_min
    << YAML::Key << "age_max" << YAML::Value << c.sfh.burst_age_max
    << YAML::Key << "width_min" << YAML::Value << c.sfh.burst_width_min
    << YAML::Key << "width_max" << YAML::Value << c.sfh.burst_width_max
    << YAML::Key << "frac_min" << YAML::Value << c.sfh.burst_frac_min
    << YAML::Key << "frac_max" << YAML::Value << c.sfh.burst_frac_max << YAML::EndMap;
  e << YAML::Key << "metallicity" << YAML::Value << YAML::Flow << YAML::BeginMap
    << YAML::Key << "z_start" << YAML::Value << c.sfh.z_start
    << YAML::Key << "z_final_min" << YAML::Value << c.sfh.z_final_min
    << YAML::Key << "z_final_max" << YAML::Value << c.sfh.z_final_max
    << YAML::Key << "z_sun" << YAML::Value << c.sfh.z_sun << YAML::EndMap;
  e << YAML::Key << "dust" << YAML::Value << YAML::Flow << YAML::BeginMap
    << YAML::Key << "enabled" << YAML::Value << c.dust.enabled
    << YAML::Key << "tau_bc_min" << YAML::Value << c.dust.tau_bc_min
    << YAML::Key << "tau_bc_max" << YAML::Value << c.dust.tau_bc_max
    << YAML::Key << "tau_ism_mean" << YAML::Value << c.dust.tau_ism_mean
    << YAML::Key << "tau_ism_sigma" << YAML::Value << c.dust.tau_ism_sigma
    << YAML::Key << "slope" << YAML::Value << c.dust.slope
    << YAML::Key << "pivot" << YAML::Value << c.dust.pivot
    << YAML::Key << "bc_age" << YAML::Value << c.dust.bc_age_gyr << YAML::EndMap;
  e << YAML::Key << "nebular" << YAML::Value << YAML::Flow << YAML::BeginMap
    << YAML::Key << "enabled" << YAML::Value << c.nebular.enabled
    << YAML::Key << "f_esc" << YAML::Value << c.nebular.f_esc
    << YAML::Key << "halpha_per_qh" << YAML::Value << c.nebular.halpha_per_qh
    << YAML::Key << "balmer_decrement" << YAML::Value << c.nebular.balmer_decrement
    << YAML::Key << "sii_ratio" << YAML::Value << c.nebular.sii_ratio << YAML::EndMap;
  e << YAML::Key << "spectrum" << YAML::Value << YAML::Flow << YAML::BeginMap
    << YAML::Key << "wave_start" << YAML::Value << c.obs.wave.crval
    << YAML::Key << "wave_step" << YAML::Value << c.obs.wave.cdelt
    << YAML::Key << "n_wave" << YAML::Value << c.obs.wave.n
    << YAML::Key << "sigma_kms" << YAML::Value << c.obs.sigma_kms
    << YAML::Key << "lsf" << YAML::Value << c.obs.lsf
    << YAML::Key << "ssp_fwhm" << YAML::Value << c.obs.ssp_fwhm
    << YAML::Key << "norm_min" << YAML::Value << c.obs.norm_min
    << YAML::Key << "norm_max" << YAML::Value << c.obs.norm_max
    << YAML::Key << "substeps_per_bin" << YAML::Value << c.obs.substeps_per_bin
    << YAML::Key << "ages_per_step" << YAML::Value << c.obs.ages_per_step
    << YAML::Key << "mass_label" << YAML::Value << c.obs.mass_label << YAML::EndMap;
  e << YAML::Key << "photometry" << YAML::Value << YAML::Flow << YAML::BeginMap
    << YAML::Key << "bands" << YAML::Value << YAML::Flow << c.obs.bands
    << YAML::Key << "filter_dir" << YAML::Value << c.obs.filter_dir << YAML::EndMap;
  e << YAML::Key << "noise" << YAML::Value << YAML::Flow << YAML::BeginMap
    << YAML::Key << "enabled" << YAML::Value << c.noise.enabled
    << YAML::Key << "snr" << YAML::Value << YAML::Flow << c.noise.snr
    << YAML::Key << "phot_snr" << YAML::Value << c.noise.phot_snr
    << YAML::Key << "error_spectrum" << YAML::Value << c.error_spectrum_path << YAML::EndMap;
  e << YAML::EndMap;
  return e.c_str();
}

}  // namespace cubeflow::sim
