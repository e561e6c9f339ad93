// Node inference.stellar_mass: stellar mass and mass surface density per bin from an inferred
// history and the bin's absolute flux (libs/sim stellar_mass.hpp does the physics).
#include "stellar_mass_node.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "cubeflow/fits/wcs.hpp"
#include "cubeflow/nn/cnn.hpp"
#include "cubeflow/nn/sbi.hpp"
#include "cubeflow/sim/ages.hpp"
#include "cubeflow/sim/ssp.hpp"
#include "cubeflow/sim/stellar_mass.hpp"
#include "cubeflow/strings.hpp"

namespace cubeflow::inference {

namespace {

constexpr double kArcsecPerRad = 206264.80624709636;
constexpr double kLn10 = 2.302585092994046;

/// The training library's config recorded in the model's metadata (`training: library_config`).
Result<sim::SimConfig> ModelSimConfig(const std::string& model_file) {
  const std::string mpath = cnn::MetadataPath(model_file);
  std::string text;
  try {
    const YAML::Node root = YAML::LoadFile(mpath);
    const YAML::Node lc = root["training"] ? root["training"]["library_config"] : YAML::Node();
    if (!lc || !lc.IsScalar())
      return Status::Error(mpath + ": no training.library_config (the forward model of the training library); "
                                   "the model was written by an older cubeflow: train it again");
    text = lc.as<std::string>();
  } catch (const std::exception& e) {
    return Status::Error(mpath + ": " + e.what());
  }
  return sim::ParseSimConfig(text, mpath + " (training.library_config)");
}

bool IsDir(const std::string& p) {
  std::error_code ec;
  return !p.empty() && std::filesystem::is_directory(p, ec);
}

void CheckOptions(const StellarMassOptions& o, CheckReport& r) {
  const std::string file = CheckModelFiles(o.model, &cnn::MetadataPath, r);
  if (file.empty()) return;
  auto cfg = ModelSimConfig(file);
  if (!cfg.ok()) r.Error("model", cfg.status().message());
  if (!o.ssp_dir.empty() && !IsDir(o.ssp_dir))
    r.Error("ssp_dir", "'" + o.ssp_dir + "' is not a directory: give the directory of the model's SSP library");
  if (!o.young_ssp_dir.empty() && !IsDir(o.young_ssp_dir))
    r.Error("young_ssp_dir", "'" + o.young_ssp_dir + "' is not a directory: give the Maraston 2005 directory");
}

double MetaOr(const Spectrum& s, const char* key, double fallback) {
  auto it = s.meta.find(key);
  return it == s.meta.end() ? fallback : it->second;
}

const Record::Field* FindField(const Record& r, const std::string& name) {
  auto it = r.fields.find(name);
  return it == r.fields.end() ? nullptr : &it->second;
}

double Percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(pos);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - static_cast<double>(lo)) * (v[hi] - v[lo]);
}

}  // namespace

NodeSpec StellarMassNode::Spec() {
  return NodeSpec("inference.stellar_mass", "Stellar mass and mass surface density per bin, with errors")
      .Describe(
          "Turns the normalised history a bin's inference gave (inference.cnn: mass fractions and [Z/H] in "
          "16 age bins; inference.sbi: t10..t90 and mh) into mass. The history's model spectrum per solar "
          "mass formed comes from the forward model the inference model was trained with (its metadata's "
          "training.library_config: SSP library, time grid, dust law, nebular lines); the diffuse dust "
          "optical depth is fitted to the bin's continuum shape (emission lines masked; the birth-cloud "
          "depth is the prior's median); the mass is then the bin's mean flux density in the "
          "normalisation window times 4 pi D^2 (1 + z_sys) divided by the model's, and the surface "
          "density divides the present-day mass (stars + remnants) by the bin's area (spaxels x pixel "
          "area at distance D). Errors (dex, 1 sigma): the window flux's noise, the dust fit, and the "
          "history's mass-to-light uncertainty: ml_error_dex for CNN results, the spread over posterior "
          "samples for SBI results that carry them (<x>_samples), else ml_error_dex. A bin whose fit "
          "fails is flagged (inference_failed) with NaN values, never dropped.")
      .Input("spectra", Spectrum::kType, PortKind::kStream,
             "the rest-frame, normalised spectra the inference node saw (norm and meta bunit_scale give the "
             "absolute flux; meta z_sys, nspax)")
      .Input("results", Record::kType, PortKind::kStream,
             "the inference results of the same bins (inference.cnn or inference.sbi)")
      .OptionalInput("binning", Binning::kType, PortKind::kSingle,
                     "the binning, for the pixel scale (its WCS) and each bin's spaxel count")
      .Output("results", Record::kType, PortKind::kStream,
              "mass_formed, mstar, mstar_density (M_sun/pc^2), mstar_density_kpc, log_mstar_density, "
              "with <x>_err; tau_ism_fit, living_fraction, ml_chi2")
      .Param(&Options::model, "model",
             "the inference model whose results come in (the same `model` as the inference node): its "
             "training library's forward model is used")
      .Param(&Options::distance_mpc, "distance_mpc", "luminosity distance of the galaxy", Unit{"Mpc"}, Required{},
             InRange{1e-4, 1e5})
      .Param(&Options::pixel_scale, "pixel_scale",
             "spaxel size; 0: from the binning's WCS (then the binning input is needed)", Unit{"arcsec"},
             InRange{0, 3600})
      .Param(&Options::ml_error_dex, "ml_error_dex",
             "mass-to-light uncertainty of a point-estimate history (CNN), added in quadrature (docs/stellar_mass.md "
             "says how it was measured)",
             Unit{"dex"}, InRange{0, 2})
      .Param(&Options::max_samples, "max_samples", "posterior samples per bin used for SBI results carrying them",
             InRange{1, 100000})
      .Param(&Options::ssp_dir, "ssp_dir",
             "the directory of the model's SSP library on this machine (E-MILES for `ssp: emiles` models); "
             "\"\": the recorded one if it exists, else under $CUBEFLOW_DATA_DIR/ssp")
      .Param(&Options::young_ssp_dir, "young_ssp_dir",
             "for `ssp: emiles` models, the Maraston 2005 directory; \"\": as for ssp_dir")
      .Check<Options>(CheckOptions)
      .Concurrent(Concurrency::kParallel);
}

StellarMassNode::StellarMassNode(const Options& options) : options_(options) {
  auto file = ModelFile(options.model);
  if (!file.ok()) throw Error("parameter 'model': " + file.status().message());
  model_path_ = *file;
  auto cfg = ModelSimConfig(model_path_);
  if (!cfg.ok()) throw Error("parameter 'model': " + cfg.status().message());
  sim::SimConfig c = std::move(cfg).ValueOrThrow();
  // The recorded SSP directories are those of the training machine.
  if (c.ssp == "emiles") {
    if (!options.ssp_dir.empty()) c.ssp_emiles_dir = options.ssp_dir;
    else if (!IsDir(c.ssp_emiles_dir)) c.ssp_emiles_dir.clear();
    if (!options.young_ssp_dir.empty()) c.ssp_maraston_dir = options.young_ssp_dir;
    else if (!IsDir(c.ssp_maraston_dir)) c.ssp_maraston_dir.clear();
  } else if (c.ssp != "builtin") {
    if (!options.ssp_dir.empty()) c.ssp = options.ssp_dir;
    else if (!IsDir(c.ssp))
      throw Error("the SSP directory the model " + model_path_ + " was trained with (" + c.ssp +
                  ") is not on this machine: give it as parameter 'ssp_dir'");
  }
  c.noise.enabled = false;
  auto ssp = sim::LoadSsp(sim::SspSourceOf(c));
  if (!ssp.ok())
    throw Error("the SSP library of model " + model_path_ + ": " + ssp.status().message() +
                " (or give parameter 'ssp_dir')");
  auto fm = sim::ForwardModel::Build(*ssp, c);
  if (!fm.ok()) throw Error("the forward model of model " + model_path_ + ": " + fm.status().message());
  model_ = *fm;
  if (sbi::IsSbiMetadata(cnn::MetadataPath(model_path_))) {
    auto md = sbi::ReadMetadata(cnn::MetadataPath(model_path_));
    if (!md.ok()) throw Error("parameter 'model': " + md.status().message());
    lookback_reference_ = md->lookback_reference;
  }
}

namespace {

/// Arcsec per spaxel: the parameter, else from the binning's WCS.
double PixelScaleArcsec(double given, const Binning* binning) {
  if (given > 0) return given;
  if (binning == nullptr || binning->wcs.empty())
    throw Error("no pixel scale: set parameter 'pixel_scale' (arcsec) or connect a binning whose cube has a WCS");
  auto wcs = fits::Wcs::FromCards(binning->wcs);
  if (!wcs.ok()) throw Error("the binning's WCS: " + wcs.status().message() + "; or set parameter 'pixel_scale'");
  return wcs->PixelScaleArcsec();
}

/// Relative 1-sigma of a normalised spectrum's mean in pixels [a, b) (the window mean is 1).
double WindowRelativeError(const Spectrum& s, size_t a, size_t b) {
  if (s.variance.size() != s.flux.size()) return 0.0;
  double var = 0;
  int64_t n = 0;
  for (size_t k = a; k < b && k < s.variance.size(); ++k)
    if (std::isfinite(s.variance[k]) && s.variance[k] > 0) { var += s.variance[k]; ++n; }
  return n > 0 ? std::sqrt(var) / static_cast<double>(n) : 0.0;
}

/// Writes the mass fields of one bin (NaN where `m` failed).
void SetMassFields(const StellarMassNode::Estimate& m, double area_pc2, Record* rec) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const bool ok = m.failure.empty();
  const double mformed = std::pow(10.0, m.log_formed), mstar = std::pow(10.0, m.log_living);
  const double dens = mstar / area_pc2, lin = kLn10 * m.err_dex;
  rec->Set("mass_formed", mformed, "solMass", "stellar mass formed in the bin (integral of the SFH)");
  rec->Set("mass_formed_err", mformed * lin, "solMass", "1-sigma error of mass_formed");
  rec->Set("mstar", mstar, "solMass", "present-day stellar mass of the bin (stars + remnants)");
  rec->Set("mstar_err", mstar * lin, "solMass", "1-sigma error of mstar");
  rec->Set("mstar_density", dens, "solMass/pc**2", "stellar mass surface density (stars + remnants, projected)");
  rec->Set("mstar_density_err", dens * lin, "solMass/pc**2", "1-sigma error of mstar_density");
  rec->Set("mstar_density_kpc", dens * 1e6, "solMass/kpc**2", "stellar mass surface density per kpc^2");
  rec->Set("mstar_density_kpc_err", dens * 1e6 * lin, "solMass/kpc**2", "1-sigma error of mstar_density_kpc");
  rec->Set("log_mstar_density", std::log10(dens), "dex", "log10 of mstar_density in solMass/pc**2");
  rec->Set("log_mstar_density_err", m.err_dex, "dex", "1-sigma error of log_mstar_density");
  if (std::isfinite(m.p16)) {
    rec->Set("log_mstar_density_p16", m.p16 - std::log10(area_pc2), "dex",
             "16th percentile of log_mstar_density over the posterior samples (flux and dust errors not included)");
    rec->Set("log_mstar_density_p84", m.p84 - std::log10(area_pc2), "dex",
             "84th percentile of log_mstar_density over the posterior samples (flux and dust errors not included)");
  }
  rec->Set("tau_ism_fit", ok ? m.fit.tau_ism : nan, "",
           "diffuse dust optical depth at the model's pivot fitted to the continuum shape");
  rec->Set("tau_ism_fit_err", ok ? m.fit.tau_ism_err : nan, "", "1-sigma error of tau_ism_fit");
  rec->Set("living_fraction", ok ? m.fit.living_fraction : nan, "", "stars + remnants per unit mass formed");
  rec->Set("ml_chi2", ok ? m.fit.chi2_reduced : nan, "",
           "reduced chi^2 of the history's normalised model spectrum against the bin's");
}

}  // namespace

StellarMassNode::BinHistory StellarMassNode::HistoryOf(const Record& in, const std::string& bin_name) const {
  const sim::SimConfig& cfg = model_->config();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  BinHistory out{Status::Error("no history"), {}, cfg.sfh.z_sun};
  if (const auto* mf = FindField(in, "mass_frac")) {
    const auto* zh = FindField(in, "zh");
    if (zh == nullptr || zh->values.size() != mf->values.size() ||
        mf->values.size() != static_cast<size_t>(sim::kNumAgeBins))
      throw Error(bin_name + ": results have mass_frac but no zh of " + std::to_string(sim::kNumAgeBins) +
                  " age bins: connect inference.cnn's results");
    out.history = sim::HistoryFromAgeBins(model_->time_grid(), mf->values.data(), zh->values.data(), cfg.sfh.z_sun,
                                          sim::CosmicTimeGyr(0.0, cfg.sfh.cosmology));
    if (const auto* mwz = FindField(in, "mw_zh"); mwz && std::isfinite(mwz->values[0]))
      out.z_gas = cfg.sfh.z_sun * std::pow(10.0, mwz->values[0]);
    return out;
  }
  if (!FindField(in, "t50") || !FindField(in, "mh"))
    throw Error(bin_name + ": results have neither mass_frac/zh (inference.cnn) nor t50/mh (inference.sbi): "
                           "connect an inference node's results");
  std::vector<std::string> names;
  for (int p = 10; p <= 90; p += 10) names.push_back("t" + std::to_string(p));
  std::vector<double> t;
  for (const auto& n : names) {
    const auto* f = FindField(in, n);
    t.push_back(f ? f->values[0] : nan);
  }
  const double mh = FindField(in, "mh")->values[0];
  out.history = sim::HistoryFromMassPercentiles(model_->time_grid(), t.data(), t.size(), lookback_reference_, mh,
                                                cfg.sfh.z_sun);
  if (std::isfinite(mh)) out.z_gas = cfg.sfh.z_sun * std::pow(10.0, mh);
  // Posterior samples, when the SBI node wrote them for every parameter.
  std::vector<const Record::Field*> sf;
  for (const auto& n : names) sf.push_back(FindField(in, n + "_samples"));
  sf.push_back(FindField(in, "mh_samples"));
  const Record::Field* mh_samples = sf.back();
  const bool have = mh_samples != nullptr && std::all_of(sf.begin(), sf.end(), [&](const Record::Field* f) {
    return f != nullptr && f->values.size() == mh_samples->values.size() && !f->values.empty();
  });
  if (!have) return out;
  const size_t ns = sf.back()->values.size();
  const size_t use = std::min<size_t>(ns, static_cast<size_t>(options_.max_samples));
  for (size_t k = 0; k < use; ++k) {
    const size_t at = k * ns / use;
    std::vector<double> tk;
    for (size_t p = 0; p < names.size(); ++p) tk.push_back(sf[p]->values[at]);
    auto h = sim::HistoryFromMassPercentiles(model_->time_grid(), tk.data(), tk.size(), lookback_reference_,
                                             sf.back()->values[at], cfg.sfh.z_sun);
    if (h.ok()) out.samples.push_back(std::move(*h));
  }
  return out;
}

StellarMassNode::Estimate StellarMassNode::EstimateMass(const Spectrum& s, const BinHistory& h, double flux_norm,
                                                        double nspax) const {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Estimate m{nan, nan, nan, nan, nan, {}, ""};
  if (!h.history.ok()) {
    m.failure = h.history.status().message();
  } else if (s.flux.size() != model_->wave().size()) {
    m.failure = "the spectrum has " + std::to_string(s.flux.size()) + " pixels, the model grid " +
                std::to_string(model_->wave().size());
  } else {
    std::vector<double> var = s.variance;
    if (var.size() != s.flux.size()) var.assign(s.flux.size(), 1.0);
    auto fit = sim::FitLightToMass(*model_, *h.history, h.z_gas, s.flux.data(), var.data(),
                                   s.mask.empty() ? nullptr : s.mask.data(), s.flux.size());
    if (fit.ok()) m.fit = *fit;
    else m.failure = fit.status().message();
  }
  if (m.failure.empty() && !(flux_norm > 0)) m.failure = "no positive flux in the normalisation window";
  if (m.failure.empty() && !(nspax > 0)) m.failure = "unknown number of spaxels (connect the binning)";
  if (!m.failure.empty()) return m;

  const double d_cm = options_.distance_mpc * 1e6 * sim::kParsecCm;
  const double lum_per_flux = 4.0 * M_PI * d_cm * d_cm * (1.0 + MetaOr(s, "z_sys", 0.0)) / sim::kSolarLuminosityErg;
  m.log_formed = std::log10(flux_norm * lum_per_flux / m.fit.window_flux);
  m.log_living = m.log_formed + std::log10(m.fit.living_fraction);
  const sim::ForwardModel::Tables tables = model_->tables();
  const double flux_dex = WindowRelativeError(s, tables.norm_first, tables.norm_end) / kLn10;
  const double dust_dex = m.fit.dlog10_window_dtau * m.fit.tau_ism_err;
  double history_dex = options_.ml_error_dex;
  if (h.samples.size() >= 10) {
    // The posterior's spread of flux per unit stellar mass at the fitted dust.
    std::vector<double> lm;
    const sim::DustParams dust{m.fit.tau_bc, m.fit.tau_ism};
    for (const auto& sample : h.samples) {
      sim::Rendered r;
      model_->Render(sample, dust, h.z_gas, &r);
      if (r.norm > 0) lm.push_back(std::log10(r.norm / model_->LivingFraction(sample)));
    }
    if (lm.size() >= 10) {
      const double mid = std::log10(m.fit.window_flux / m.fit.living_fraction);
      history_dex = 0.5 * (Percentile(lm, 0.84) - Percentile(lm, 0.16));
      m.p16 = m.log_living - (Percentile(lm, 0.84) - mid);
      m.p84 = m.log_living - (Percentile(lm, 0.16) - mid);
    }
  }
  m.err_dex = std::sqrt(flux_dex * flux_dex + dust_dex * dust_dex + history_dex * history_dex);
  return m;
}

void StellarMassNode::Process(ProcessContext& ctx) {
  auto binning = ctx.OptionalInput<Binning>("binning");
  const double pixel_arcsec = PixelScaleArcsec(options_.pixel_scale, binning.get());
  const double pixel_pc2 = std::pow(pixel_arcsec / kArcsecPerRad * options_.distance_mpc * 1e6, 2);
  for (size_t i = 0; i < ctx.size(); ++i) {
    auto s = ctx.Input<Spectrum>("spectra", i);
    auto in = ctx.Input<Record>("results", i);
    const int64_t key = ctx.key(i);
    const std::string bin_name = "bin " + std::to_string(key);
    const BinHistory history = HistoryOf(*in, bin_name);

    // The bin's absolute flux in the normalisation window and its spaxels.
    const double scale = MetaOr(*s, "bunit_scale", std::numeric_limits<double>::quiet_NaN());
    if (!std::isfinite(scale))
      throw Error(bin_name + ": the spectrum has no flux unit scale (meta bunit_scale): the cube's BUNIT must be a "
                             "flux density unit (e.g. 10**(-20)*erg/s/cm**2/Angstrom) for a mass");
    double nspax = MetaOr(*s, "nspax", std::numeric_limits<double>::quiet_NaN());
    if (binning && key >= 0 && static_cast<size_t>(key) < binning->bins.size())
      nspax = static_cast<double>(binning->bins[static_cast<size_t>(key)].nspax);

    const Estimate m = EstimateMass(*s, history, s->norm * scale, nspax);
    auto rec = std::make_shared<Record>();
    rec->id = key;
    rec->quality = in->quality | s->quality;
    if (!m.failure.empty()) {
      rec->quality |= kQualInferenceFailed;
      ctx.Log(LogLevel::kWarn, bin_name + ": no stellar mass: " + m.failure);
    }
    SetMassFields(m, nspax * pixel_pc2, rec.get());
    ctx.Emit("results", rec, i);
  }
}

void RegisterStellarMassNodes(Registry& r) { r.Add<StellarMassNode>(); }

}  // namespace cubeflow::inference
