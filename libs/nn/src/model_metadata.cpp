// Model descriptions of the CNN and of SBI models: the architectures' checks and the metadata
// files (`<model>.yaml`), with one writer and one reader of the parts both kinds share
// (architecture branch sizes, the input conventions, provenance) and the kind-specific parts
// beside them. No libtorch.
#include <yaml-cpp/yaml.h>

#include <string>
#include <type_traits>
#include <vector>

#include "arch_fields.hpp"
#include "cubeflow/atomic_file.hpp"
#include "cubeflow/nn/cnn.hpp"
#include "cubeflow/nn/sbi.hpp"
#include "cubeflow/strings.hpp"

namespace cubeflow {

namespace nn {
namespace {

template <typename T>
void EmitSeq(YAML::Emitter& e, const char* key, const std::vector<T>& v) {
  e << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq;
  for (const auto& x : v) e << x;
  e << YAML::EndSeq;
}

template <typename T>
std::vector<T> ReadSeq(const YAML::Node& n) {
  std::vector<T> v;
  if (n && n.IsSequence())
    for (const auto& x : n) v.push_back(x.as<T>());
  return v;
}

/// `key: value` (a flow sequence for vectors).
struct FieldWriter {
  YAML::Emitter& e;
  template <typename T>
  void operator()(const char* key, const T& v) const {
    if constexpr (std::is_same_v<T, std::vector<int64_t>>)
      EmitSeq(e, key, v);
    else
      e << YAML::Key << key << YAML::Value << v;
  }
};

/// Reads `key` of `node` into the field when present (vectors: a sequence, else empty).
struct FieldReader {
  const YAML::Node& node;
  template <typename T>
  void operator()(const char* key, T& v) const {
    if (!node[key]) return;
    if constexpr (std::is_same_v<T, std::vector<int64_t>>)
      v = ReadSeq<int64_t>(node[key]);
    else
      v = node[key].as<T>();
  }
};

/// \brief The keys of a metadata file that say what a model's inputs must look like: wavelength
/// grid, rest frame, normalisation window, broadening, bands and the photometry transform. The
/// same keys for CNN and SBI models.
struct InputBlock {
  inputs::InputConventions input;
  double sigma_target = 150;
  std::string phot_transform;
  double phot_floor = 1e-6;
  std::vector<double> phot_mean, phot_std;
};

/// The block of a CnnMetadata or SbiMetadata with conventions `input` (both name the other fields
/// alike).
template <typename Metadata>
InputBlock InputBlockOf(const Metadata& md, inputs::InputConventions input) {
  return {std::move(input), md.sigma_target, md.phot_transform, md.phot_floor, md.phot_mean, md.phot_std};
}

/// Sets the block's fields other than the conventions.
template <typename Metadata>
void SetPhotometryFields(const InputBlock& b, Metadata& md) {
  md.sigma_target = b.sigma_target;
  md.phot_transform = b.phot_transform;
  md.phot_floor = b.phot_floor;
  md.phot_mean = b.phot_mean;
  md.phot_std = b.phot_std;
}

/// Writes `wavelength`, `normalisation`, `sigma_target` and `photometry`.
void WriteInputConventions(YAML::Emitter& e, const InputBlock& b) {
  const auto& in = b.input;
  e << YAML::Key << "wavelength" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "start" << YAML::Value << in.wave.At(0);
  e << YAML::Key << "step" << YAML::Value << in.wave.cdelt;
  e << YAML::Key << "n" << YAML::Value << in.wave.n;
  e << YAML::Key << "log" << YAML::Value << in.wave.log;
  e << YAML::Key << "air" << YAML::Value << in.wave.air;
  e << YAML::Key << "rest_frame" << YAML::Value << in.rest_frame;
  e << YAML::EndMap;
  e << YAML::Key << "normalisation" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "window" << YAML::Value << YAML::Flow << YAML::BeginSeq << in.norm_min << in.norm_max << YAML::EndSeq;
  e << YAML::Key << "statistic" << YAML::Value << "mean";
  e << YAML::EndMap;
  e << YAML::Key << "sigma_target" << YAML::Value << b.sigma_target;
  e << YAML::Key << "photometry" << YAML::Value << YAML::BeginMap;
  EmitSeq(e, "bands", in.bands);
  EmitSeq(e, "pivots", in.pivots);
  e << YAML::Key << "transform" << YAML::Value << b.phot_transform;
  e << YAML::Key << "floor" << YAML::Value << b.phot_floor;
  EmitSeq(e, "mean", b.phot_mean);
  EmitSeq(e, "std", b.phot_std);
  e << YAML::EndMap;
}

/// \brief What the architecture says the input block must match, for ReadInputConventions.
struct InputShape {
  int64_t nwave = 0, nbands = 0;
  const char* section;                     ///< "architecture" or "encoder": named in messages
  std::vector<std::string> transforms;     ///< allowed photometry transforms
};

/// Reads the keys WriteInputConventions writes into `b` (which holds the defaults) and checks them
/// against the architecture. `src` names the file in messages; `where` follows the section read,
/// for the caller's message when yaml-cpp throws.
Status ReadInputConventions(const YAML::Node& root, const std::string& src, const InputShape& shape,
                            std::string& where, InputBlock& b) {
  auto& in = b.input;
  where = "wavelength";
  auto w = root["wavelength"];
  if (!w || !w["start"] || !w["step"] || !w["n"])
    return Status::Error(src + ": missing wavelength.start/step/n (the model's grid): write them as "
                               "`wavelength: {start: A, step: A, n: N}`");
  in.wave = WavelengthAxis::Linear(w["start"].as<double>(), w["step"].as<double>(), w["n"].as<int64_t>());
  if (w["log"]) in.wave.log = w["log"].as<bool>();
  if (w["air"]) in.wave.air = w["air"].as<bool>();
  if (w["rest_frame"]) in.rest_frame = w["rest_frame"].as<bool>();
  if (in.wave.n != shape.nwave)
    return Status::Error(src + ": wavelength.n = " + std::to_string(in.wave.n) + " but " + shape.section +
                         ".nwave = " + std::to_string(shape.nwave));
  where = "normalisation";
  if (auto nm = root["normalisation"]) {
    auto win = ReadSeq<double>(nm["window"]);
    if (win.size() != 2)
      return Status::Error(src + ": normalisation.window needs 2 values, [min, max] in Angstrom");
    in.norm_min = win[0];
    in.norm_max = win[1];
  }
  if (root["sigma_target"]) b.sigma_target = root["sigma_target"].as<double>();
  where = "photometry";
  if (auto p = root["photometry"]) {
    in.bands = ReadSeq<std::string>(p["bands"]);
    in.pivots = ReadSeq<double>(p["pivots"]);
    if (p["transform"]) b.phot_transform = p["transform"].as<std::string>();
    if (p["floor"]) b.phot_floor = p["floor"].as<double>();
    b.phot_mean = ReadSeq<double>(p["mean"]);
    b.phot_std = ReadSeq<double>(p["std"]);
  }
  bool known = false;
  for (const auto& t : shape.transforms) known = known || t == b.phot_transform;
  if (!known)
    return Status::Error(src + ": photometry.transform '" + b.phot_transform + "' is not '" +
                         Join(shape.transforms, "' or '") + "'");
  const size_t nb = static_cast<size_t>(shape.nbands);
  if (in.bands.size() != nb)
    return Status::Error(src + ": photometry.bands has " + std::to_string(in.bands.size()) + " names but " +
                         shape.section + ".nbands = " + std::to_string(nb));
  if (b.phot_mean.empty()) b.phot_mean.assign(nb, 0.0);
  if (b.phot_std.empty()) b.phot_std.assign(nb, 1.0);
  if (b.phot_mean.size() != nb || b.phot_std.size() != nb)
    return Status::Error(src + ": photometry.mean/std need one value per band (" + std::to_string(nb) + ")");
  return Status::OK();
}

/// Writes `training`, `metrics` and `config` (the last keys of both kinds of file).
void WriteProvenance(YAML::Emitter& e, const std::map<std::string, std::string>& training,
                     const std::map<std::string, double>& metrics, const std::string& config_yaml) {
  e << YAML::Key << "training" << YAML::Value << YAML::BeginMap;
  for (const auto& [k, v] : training) e << YAML::Key << k << YAML::Value << v;
  e << YAML::EndMap;
  e << YAML::Key << "metrics" << YAML::Value << YAML::BeginMap;
  for (const auto& [k, v] : metrics) e << YAML::Key << k << YAML::Value << v;
  e << YAML::EndMap;
  e << YAML::Key << "config" << YAML::Value << YAML::Literal << config_yaml;
}

void ReadProvenance(const YAML::Node& root, std::string& where, std::map<std::string, std::string>& training,
                    std::map<std::string, double>& metrics, std::string& config_yaml) {
  where = "training";
  if (auto t = root["training"])
    for (const auto& kv : t) training[kv.first.as<std::string>()] = kv.second.as<std::string>();
  where = "metrics";
  if (auto m = root["metrics"])
    for (const auto& kv : m) metrics[kv.first.as<std::string>()] = kv.second.as<double>();
  where = "config";
  if (root["config"]) config_yaml = root["config"].as<std::string>();
}

/// The emitter's text, written atomically.
Status WriteEmitted(const YAML::Emitter& e, const std::string& path, const std::string& what) {
  if (!e.good()) return Status::Error("cannot format " + what + " for " + path + ": " + e.GetLastError());
  return WriteFileAtomic(path, std::string(e.c_str()) + "\n");
}

}  // namespace
}  // namespace nn

// ---------------------------------------------------------------------------------------
// CNN
// ---------------------------------------------------------------------------------------

namespace cnn {

int64_t CnnArch::PooledLength() const { return nn::PooledLength(*this); }

Status CnnArch::Validate() const {
  return nn::ValidateArch(*this, "", [](const auto& a, auto&& f) { nn::ForEachCnnArchField(a, f); });
}

std::string MetadataPath(const std::string& model_path) { return model_path + ".yaml"; }

std::vector<double> DefaultAgeBinCentres() {
  return {0.007, 0.021, 0.0425, 0.076, 0.1145, 0.1615, 0.23, 0.345,
          0.545, 0.865, 1.37,   2.17,  3.44,   5.455,  8.645,  14.2};
}

inputs::InputConventions CnnMetadata::Conventions() const {
  inputs::InputConventions c;
  c.wave = wave;
  c.rest_frame = rest_frame;
  c.norm_min = norm_min;
  c.norm_max = norm_max;
  c.bands = bands;
  c.pivots = pivots;
  return c;
}

void CnnMetadata::SetConventions(const inputs::InputConventions& c) {
  wave = c.wave;
  rest_frame = c.rest_frame;
  norm_min = c.norm_min;
  norm_max = c.norm_max;
  bands = c.bands;
  pivots = c.pivots;
}

Status WriteMetadata(const std::string& path, const CnnMetadata& md) {
  YAML::Emitter e;
  e.SetDoublePrecision(17);
  e << YAML::BeginMap;
  e << YAML::Key << "cubeflow_cnn_metadata" << YAML::Value << 1;
  e << YAML::Key << "format" << YAML::Value << md.format;
  e << YAML::Key << "architecture" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "nwave" << YAML::Value << md.arch.nwave;
  e << YAML::Key << "nbands" << YAML::Value << md.arch.nbands;
  nn::ForEachCnnArchField(md.arch, nn::FieldWriter{e});
  e << YAML::EndMap;
  nn::WriteInputConventions(e, nn::InputBlockOf(md, md.Conventions()));
  nn::EmitSeq(e, "age_bin_centres", md.age_bin_centres);
  nn::EmitSeq(e, "age_bin_edges", md.age_bin_edges);
  e << YAML::Key << "ssp" << YAML::Value << md.ssp_name;
  e << YAML::Key << "light_to_mass" << YAML::Value << YAML::BeginMap;
  nn::EmitSeq(e, "zh_grid", md.lm_zh_grid);
  nn::EmitSeq(e, "lm_v", md.lm_v);
  e << YAML::EndMap;
  nn::WriteProvenance(e, md.training, md.metrics, md.config_yaml);
  e << YAML::EndMap;
  return nn::WriteEmitted(e, path, "model metadata");
}

Result<CnnMetadata> ReadMetadata(const std::string& path) {
  CnnMetadata md;
  std::string where = "top level";
  const std::string src = "model metadata " + path;
  try {
    YAML::Node root = YAML::LoadFile(path);
    if (!root.IsMap()) return Status::Error(src + " is not a YAML mapping");
    if (root["format"]) md.format = root["format"].as<std::string>();
    if (md.format != "state_dict" && md.format != "torchscript")
      return Status::Error(src + ": format '" + md.format + "' is not 'state_dict' or 'torchscript'");
    if (auto a = root["architecture"]) {
      where = "architecture";
      nn::FieldReader read{a};
      read("nwave", md.arch.nwave);
      read("nbands", md.arch.nbands);
      nn::ForEachCnnArchField(md.arch, read);
    }
    nn::InputBlock b = nn::InputBlockOf(md, md.Conventions());
    CUBEFLOW_RETURN_NOT_OK(nn::ReadInputConventions(
        root, src, {md.arch.nwave, md.arch.nbands, "architecture", {"log10_standardise", "none"}}, where, b));
    md.SetConventions(b.input);
    nn::SetPhotometryFields(b, md);
    where = "age_bin_centres";
    md.age_bin_centres = nn::ReadSeq<double>(root["age_bin_centres"]);
    if (md.age_bin_centres.empty()) md.age_bin_centres = DefaultAgeBinCentres();
    if (md.age_bin_centres.size() != kNumBins)
      return Status::Error(src + ": age_bin_centres needs " + std::to_string(kNumBins) + " values (Gyr)");
    md.age_bin_edges = nn::ReadSeq<double>(root["age_bin_edges"]);
    if (root["ssp"]) md.ssp_name = root["ssp"].as<std::string>();
    where = "light_to_mass";
    if (auto lm = root["light_to_mass"]) {
      md.lm_zh_grid = nn::ReadSeq<double>(lm["zh_grid"]);
      md.lm_v = nn::ReadSeq<double>(lm["lm_v"]);
      if (md.lm_v.size() != md.lm_zh_grid.size() * kNumBins)
        return Status::Error(src + ": light_to_mass.lm_v needs len(zh_grid) x 16 values");
    }
    nn::ReadProvenance(root, where, md.training, md.metrics, md.config_yaml);
  } catch (const YAML::Exception& ex) {
    return Status::Error("cannot read " + src + " (" + where + "): " + ex.what());
  }
  if (md.format == "state_dict") {
    Status st = md.arch.Validate();
    if (!st.ok()) return Status::Error(src + ": architecture: " + st.message());
  }
  return md;
}

}  // namespace cnn

// ---------------------------------------------------------------------------------------
// SBI
// ---------------------------------------------------------------------------------------

namespace sbi {

int64_t EncoderArch::PooledLength() const { return nn::PooledLength(*this); }

Status EncoderArch::Validate() const {
  return nn::ValidateArch(*this, "encoder ", [](const auto& a, auto&& f) { nn::ForEachEncoderArchField(a, f); });
}

Status FlowArch::Validate() const {
  if (dim < 2) return Status::Error("flow.dim must be >= 2 (coupling layers split the parameters in two)");
  if (transform != "spline" && transform != "affine")
    return Status::Error("flow.transform must be 'spline' or 'affine' (got '" + transform + "')");
  if (layers < 1 || hidden < 1 || context_hidden < 1) return Status::Error("flow layers, hidden and context_hidden must be >= 1");
  if (transform == "spline" && bins < 2) return Status::Error("flow.bins must be >= 2");
  if (!(tail_bound > 0)) return Status::Error("flow.tail_bound must be > 0");
  return Status::OK();
}


std::string MetadataPath(const std::string& model_path) { return cnn::MetadataPath(model_path); }

bool IsSbiMetadata(const std::string& path) {
  try {
    YAML::Node root = YAML::LoadFile(path);
    return root.IsMap() && root["kind"] && root["kind"].as<std::string>() == "sbi";
  } catch (const std::exception&) {
    return false;
  }
}

Status WriteMetadata(const std::string& path, const SbiMetadata& md) {
  YAML::Emitter e;
  e.SetDoublePrecision(17);
  e << YAML::BeginMap;
  e << YAML::Key << "cubeflow_sbi_metadata" << YAML::Value << 1;
  e << YAML::Key << "kind" << YAML::Value << "sbi";
  e << YAML::Key << "format" << YAML::Value << md.format;
  e << YAML::Key << "encoder" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "nwave" << YAML::Value << md.encoder.nwave;
  e << YAML::Key << "nbands" << YAML::Value << md.encoder.nbands;
  e << YAML::Key << "noise_input" << YAML::Value << md.encoder.noise_input;
  nn::ForEachEncoderArchField(md.encoder, nn::FieldWriter{e});
  e << YAML::EndMap;
  e << YAML::Key << "flow" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "dim" << YAML::Value << md.flow.dim;
  nn::ForEachFlowArchField(md.flow, nn::FieldWriter{e});
  e << YAML::Key << "permutation_seed" << YAML::Value << md.flow.permutation_seed;
  e << YAML::EndMap;
  nn::WriteInputConventions(e, nn::InputBlockOf(md, md.input));
  e << YAML::Key << "noise" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "estimator" << YAML::Value << "1 / median(sigma) over the normalisation window (normalised flux)";
  e << YAML::Key << "transform" << YAML::Value << "log10_standardise";
  e << YAML::Key << "log_mean" << YAML::Value << md.snr_log_mean;
  e << YAML::Key << "log_std" << YAML::Value << md.snr_log_std;
  e << YAML::Key << "snr_min" << YAML::Value << md.snr_min;
  e << YAML::Key << "snr_max" << YAML::Value << md.snr_max;
  e << YAML::EndMap;
  e << YAML::Key << "theta" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "lookback_reference_gyr" << YAML::Value << md.lookback_reference;
  e << YAML::Key << "lookback_offset_gyr" << YAML::Value << md.lookback_offset;
  e << YAML::Key << "parameters" << YAML::Value << YAML::BeginSeq;
  for (const auto& p : md.theta) {
    e << YAML::BeginMap;
    e << YAML::Key << "name" << YAML::Value << p.name;
    e << YAML::Key << "unit" << YAML::Value << p.unit;
    e << YAML::Key << "transform" << YAML::Value << p.transform;
    e << YAML::Key << "mean" << YAML::Value << p.mean;
    e << YAML::Key << "std" << YAML::Value << p.std;
    e << YAML::Key << "doc" << YAML::Value << p.doc;
    e << YAML::EndMap;
  }
  e << YAML::EndSeq;
  e << YAML::EndMap;
  e << YAML::Key << "ssp" << YAML::Value << md.ssp_name;
  nn::WriteProvenance(e, md.training, md.metrics, md.config_yaml);
  e << YAML::EndMap;
  return nn::WriteEmitted(e, path, "SBI model metadata");
}

Result<SbiMetadata> ReadMetadata(const std::string& path) {
  SbiMetadata md;
  std::string where = "top level";
  const std::string src = "SBI model metadata " + path;
  try {
    YAML::Node root = YAML::LoadFile(path);
    if (!root.IsMap()) return Status::Error(src + " is not a YAML mapping");
    if (!root["kind"] || root["kind"].as<std::string>() != "sbi")
      return Status::Error(path + " has no 'kind: sbi': it is not an SBI model (a CNN model is used with "
                                  "inference.cnn)");
    if (root["format"]) md.format = root["format"].as<std::string>();
    if (md.format != "state_dict") return Status::Error(src + ": format '" + md.format + "' is not 'state_dict'");
    where = "encoder";
    auto en = root["encoder"];
    if (!en) return Status::Error(src + ": missing 'encoder' (the encoder's layer sizes)");
    nn::FieldReader read_encoder{en};
    read_encoder("nwave", md.encoder.nwave);
    read_encoder("nbands", md.encoder.nbands);
    read_encoder("noise_input", md.encoder.noise_input);
    nn::ForEachEncoderArchField(md.encoder, read_encoder);
    where = "flow";
    auto fl = root["flow"];
    if (!fl) return Status::Error(src + ": missing 'flow' (the flow's layer sizes)");
    nn::FieldReader read_flow{fl};
    read_flow("dim", md.flow.dim);
    nn::ForEachFlowArchField(md.flow, read_flow);
    read_flow("permutation_seed", md.flow.permutation_seed);
    nn::InputBlock b = nn::InputBlockOf(md, md.input);
    CUBEFLOW_RETURN_NOT_OK(nn::ReadInputConventions(
        root, src, {md.encoder.nwave, md.encoder.nbands, "encoder", {"log10_standardise"}}, where, b));
    md.input = b.input;
    nn::SetPhotometryFields(b, md);
    where = "noise";
    if (auto nz = root["noise"]) {
      nn::FieldReader read_noise{nz};
      read_noise("log_mean", md.snr_log_mean);
      read_noise("log_std", md.snr_log_std);
      read_noise("snr_min", md.snr_min);
      read_noise("snr_max", md.snr_max);
    }
    if (!(md.snr_log_std > 0)) return Status::Error(src + ": noise.log_std must be > 0");
    where = "theta";
    auto th = root["theta"];
    if (!th || !th["parameters"] || !th["parameters"].IsSequence())
      return Status::Error(src + ": missing theta.parameters (the inferred parameters and their standardisation)");
    if (th["lookback_reference_gyr"]) md.lookback_reference = th["lookback_reference_gyr"].as<double>();
    if (th["lookback_offset_gyr"]) md.lookback_offset = th["lookback_offset_gyr"].as<double>();
    for (const auto& pn : th["parameters"]) {
      ThetaParam p;
      p.name = pn["name"].as<std::string>();
      where = "theta.parameters." + p.name;
      nn::FieldReader read_param{pn};
      read_param("unit", p.unit);
      read_param("doc", p.doc);
      read_param("transform", p.transform);
      read_param("mean", p.mean);
      read_param("std", p.std);
      if (p.transform != "linear" && p.transform != "log_lookback")
        return Status::Error(src + ": " + where + ".transform '" + p.transform + "' is not 'linear' or 'log_lookback'");
      if (!(p.std > 0)) return Status::Error(src + ": " + where + ".std must be > 0");
      md.theta.push_back(p);
    }
    if (static_cast<int64_t>(md.theta.size()) != md.flow.dim)
      return Status::Error(src + ": theta.parameters has " + std::to_string(md.theta.size()) +
                           " entries but flow.dim = " + std::to_string(md.flow.dim));
    where = "ssp";
    if (root["ssp"]) md.ssp_name = root["ssp"].as<std::string>();
    nn::ReadProvenance(root, where, md.training, md.metrics, md.config_yaml);
  } catch (const YAML::Exception& ex) {
    return Status::Error("cannot read " + src + " (" + where + "): " + ex.what());
  }
  Status st = md.encoder.Validate();
  if (!st.ok()) return Status::Error(src + ": " + st.message());
  st = md.flow.Validate();
  if (!st.ok()) return Status::Error(src + ": " + st.message());
  return md;
}

}  // namespace sbi

}  // namespace cubeflow
